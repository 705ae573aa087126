"""Dead-letter operations: record a failure, requeue it, discard it, purge old rows."""

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery import current_app
from celery.utils import uuid
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from workers.core.headers import REPLAY_HEADER
from workers.core.models import OutboxMessage
from workers.core.outbox import outbox_enqueue_many
from workers.core.redaction import call_secrets, hide_values
from workers.core.signals import task_dead_lettered
from workers.core.task_backend import RUNNER
from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.fingerprints import failure_fingerprint
from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.dead_letters.replay_resolutions import replays_resolve
from workers.dead_letters.rules import Action, refusal
from workers.dead_letters.spool import (
    dead_letter_spool_drain,
    dead_letter_spool_push,
    dead_letter_spool_set_aside,
)
from workers.dead_letters.storable import message_without_note, storable_fields

logger = logging.getLogger(__name__)

REQUEUE_BATCH = 500
#: What `rules.refusal` reads of a row.
RULE_FIELDS = ("pk", "status", "task_name", "raw_body", "args", "kwargs", "message",
               "original_args")
AUDITED_IDS = 1000  # an audit event lists at most this many ids


def dead_letter_record(
    *,
    task_id: str,
    task_name: str,
    queue: str,
    args: Any,
    kwargs: Any,
    exception: BaseException,
    traceback: str,
    attempts: int,
    worker: str,
    replay_of_id: int | None,
    raw_body: str = "",
    attempt_errors: list[dict[str, Any]] | None = None,
) -> DeadLetter | None:
    """Store a failed task once per task id, whichever failure path reports it first.

    Content PostgreSQL refuses (a NUL, a surrogate, NaN, an over-long header) is escaped
    first (workers/dead_letters/storable.py), so a hostile job still becomes a row. With
    the database unreachable (a connection error) the row goes to the Redis spool
    instead, and None is returned: the caller acknowledges the message either way, so the
    failure must be kept somewhere before that. Any other error means the database is up
    and refuses this row: spooling it would only stop the drain on it, so it is set aside
    in Redis with its error, logged at ERROR, and None is returned. Raises only if Redis
    cannot take it either (then the acknowledgement cannot reach Redis and the message
    comes back).
    """
    # Its error text may repeat a secret argument with no name beside it: kept out of the
    # row (the arguments themselves stay exact for the replay, and are shown redacted).
    hidden = call_secrets(task_name=task_name, args=args, kwargs=kwargs)
    fields = storable_fields(fields={
        "task_id": task_id,
        "task_name": task_name,
        "queue": queue,
        "args": list(args or []),
        "kwargs": dict(kwargs or {}),
        "exception_type": f"{type(exception).__module__}.{type(exception).__qualname__}",
        "message": hide_values(str(exception), hidden),
        "traceback": hide_values(traceback, hidden),
        "attempts": attempts,
        "worker": worker,
        "replay_of_id": replay_of_id,
        "raw_body": raw_body,
        "attempt_errors": attempt_errors or [],
    })
    try:
        return dead_letter_store(fields=fields)
    except (OperationalError, InterfaceError) as exc:
        dead_letter_spool_push(fields=fields)
        logger.warning("database unavailable (%s): dead letter %s[%s] kept in the Redis "
                       "spool until it is back", exc, fields["task_name"], fields["task_id"])
        return None
    except Exception as exc:  # refused by a database that answers, or a bug: keep it
        dead_letter_spool_set_aside(entry=json.dumps(fields), error=exc)
        return None


def dead_letter_store(*, fields: dict[str, Any]) -> DeadLetter:
    """Insert the row unless its task id already has one (the same failure reported twice).

    Escapes again what PostgreSQL refuses: a spooled entry written before that rule
    existed still holds it, and escaping twice changes nothing.
    """
    fields = storable_fields(fields=fields)
    fields.setdefault("fingerprint", failure_fingerprint(
        task_name=_cause_task(fields), exception_type=fields["exception_type"],
        message=message_without_note(fields["message"])))
    replay_of_id = fields.get("replay_of_id")
    if replay_of_id is not None and not DeadLetter.objects.filter(pk=replay_of_id).exists():
        fields["replay_of_id"] = None  # the original was purged while its replay ran
    row, created = DeadLetter.objects.get_or_create(task_id=fields.pop("task_id"),
                                                    defaults=fields)
    if created:
        logger.warning("dead-lettered %s[%s] after %d attempt(s): %s",
                       row.task_name, row.task_id, row.attempts, row.exception_type)
        if row.replay_of_id is not None:
            _supersede(original_id=row.replay_of_id, replay_task_id=row.task_id)
        # send_robust: Django logs a receiver's error, and the row is kept regardless.
        transaction.on_commit(lambda: task_dead_lettered.send_robust(
            row.task_name, dead_letter_id=row.pk, task_id=row.task_id, args=row.args,
            kwargs=row.kwargs, exception_type=row.exception_type, message=row.message))
    return row


def _cause_task(fields: dict[str, Any]) -> str:
    """What a cause is grouped by: the task, or for a standard task the function it ran
    (two functions failing alike are two causes, redriven or discarded apart)."""
    kwargs = fields.get("kwargs")
    if fields["task_name"] == RUNNER and isinstance(kwargs, dict):
        return str(kwargs.get("task_path") or RUNNER)
    return str(fields["task_name"])


def _supersede(*, original_id: int, replay_task_id: str) -> None:
    """The original of a replay that failed again is closed: its failure lives on in the
    new row. Left `requeued`, it could never be triaged, replayed or purged."""
    now = timezone.now()
    DeadLetter.objects.filter(pk=original_id, status=DeadLetter.Status.REQUEUED,
                              replay_task_id=replay_task_id).update(
        status=DeadLetter.Status.SUPERSEDED, closed_at=now, closed_by="its replay failed",
        updated_at=now)


def dead_letters_drain_spool() -> int:
    """Store what the spool kept while the database was down, and resolve the rows whose
    replays succeeded (for workers that stopped before doing it); return how many rows
    were stored."""
    stored = dead_letter_spool_drain(store=dead_letter_store)
    replays_resolve()
    return stored


def dead_letter_record_message(*, task_id: str, task_name: str, queue: str, raw_body: str,
                               content_type: str, exception: BaseException,
                               worker: str) -> DeadLetter | None:
    """Store a message no task could be built from (a poison message).

    A JSON task body keeps its arguments, so the row can be replayed once the task
    exists; anything else keeps the raw body for a human and cannot be replayed. Both go
    through `dead_letter_record`: escaped, spooled only while the database is down.
    """
    arguments = _task_arguments(raw_body, content_type)
    args, kwargs = arguments if arguments else ([], {})
    return dead_letter_record(
        task_id=task_id, task_name=task_name, queue=queue, args=args, kwargs=kwargs,
        exception=exception, traceback="", attempts=1, worker=worker, replay_of_id=None,
        raw_body="" if arguments and task_name else raw_body)


@dataclass(frozen=True)
class RequeueOutcome:
    requeued: dict[int, str]  # dead letter id: replay task id
    refused: dict[int, str]  # dead letter id: why it was not requeued


@dataclass(frozen=True)
class Preview:
    """What an action would do to a selection: the rows it would touch, and how many of
    the others are left out for each reason (shown before an operator confirms)."""

    eligible: list[int]
    left_out: dict[str, int]


def dead_letters_preview(*, action: Action, dead_letter_ids: Iterable[int]) -> Preview:
    """Apply the rules of `action` to a selection without changing anything."""
    ids = sorted(set(dead_letter_ids))
    eligible, left_out = [], Counter[str]()
    for start in range(0, len(ids), REQUEUE_BATCH):
        rows = DeadLetter.objects.filter(pk__in=ids[start:start + REQUEUE_BATCH]).only(
            *RULE_FIELDS)
        for row in rows:
            reason = refusal(action, row)
            if reason:
                left_out[reason] += 1
            else:
                eligible.append(row.pk)
    missing = len(ids) - len(eligible) - sum(left_out.values())
    if missing:
        left_out["deleted since they were selected"] = missing
    return Preview(eligible=sorted(eligible), left_out=dict(left_out.most_common()))


def dead_letters_requeue(*, dead_letter_ids: Iterable[int], actor: str,
                         detail: dict[str, Any] | None = None) -> RequeueOutcome:
    """Replay the open rows among `dead_letter_ids` on their own queue, refuse the others
    with the reason, and record the requeue in the audit trail."""
    ids = sorted(set(dead_letter_ids))
    outcome = dead_letters_send_replays(dead_letter_ids=ids, actor=actor)
    dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.REQUEUED,
                      count=len(outcome.requeued),
                      detail={"ids": ids[:AUDITED_IDS], "refused": len(outcome.refused),
                              **(detail or {})})
    return outcome


def dead_letters_send_replays(*, dead_letter_ids: Iterable[int], actor: str,
                              queue: str | None = None,
                              redrive_id: int | None = None) -> RequeueOutcome:
    """Requeue many dead letters, REQUEUE_BATCH rows to a transaction, without an audit
    event of its own (for callers that record theirs: a requeue, an edit, a redrive).

    After an outage an operator replays thousands, and a transaction and a publish per
    row would make that minutes (bench/replay.py measures it). Each replay is an outbox
    job written in the transaction that marks its row: it is published only if that
    commits (a rollback never leaves a replay running for a row that still says `new`),
    and if the broker is down then, the outbox sweeper publishes it later (a row marked
    requeued always has its replay coming).
    """
    ids = sorted(set(dead_letter_ids))
    outcome = RequeueOutcome(requeued={}, refused={})
    for start in range(0, len(ids), REQUEUE_BATCH):
        with transaction.atomic():
            _requeue_batch(ids[start:start + REQUEUE_BATCH], actor=actor, outcome=outcome,
                           queue=queue, redrive_id=redrive_id)
    return outcome


def _requeue_batch(ids: list[int], *, actor: str, outcome: RequeueOutcome,
                   queue: str | None, redrive_id: int | None) -> None:
    # Not the traceback, the attempts' errors and the rest a replay does not send.
    rows = list(DeadLetter.objects.select_for_update().filter(pk__in=ids).order_by("pk")
                .only(*RULE_FIELDS, "queue"))
    for missing in sorted(set(ids) - {row.pk for row in rows}):
        outcome.refused[missing] = f"no dead letter with id {missing}"
    chosen = []
    declared = current_app.amqp.queues
    for row in rows:
        target = queue or row.queue
        reason = refusal(Action.REQUEUE, row) or (
            "" if target in declared else
            f"queue {target} is not declared in this deploy: redrive it to another queue, "
            "or discard it")
        if reason:
            outcome.refused[row.pk] = f"dead letter {row.pk}: {reason}"
        else:
            row.replay_task_id = uuid()
            chosen.append(row)
            outcome.requeued[row.pk] = row.replay_task_id
    _mark_requeued(chosen, actor=actor, redrive_id=redrive_id)
    outbox_enqueue_many(jobs=[OutboxMessage(
        task_id=row.replay_task_id, task_name=row.task_name, queue=queue or row.queue,
        args=row.args, kwargs=row.kwargs, headers={REPLAY_HEADER: row.pk}) for row in chosen])


def _mark_requeued(rows: list[DeadLetter], *, actor: str, redrive_id: int | None) -> None:
    """One UPDATE from arrays: what the rows share, and each its replay's task id (the
    ORM's bulk_update writes a CASE per row and field, half a requeue's time before)."""
    if not rows:
        return
    now = timezone.now()
    if connection.vendor != "postgresql":  # SQLite, `make dev`'s default: a row at a time
        for row in rows:
            DeadLetter.objects.filter(pk=row.pk).update(
                status=DeadLetter.Status.REQUEUED, requeue_count=F("requeue_count") + 1,
                requeued_at=now, requeued_by=actor, closed_at=None, closed_by="",
                updated_at=now, snoozed_until=None, redrive_id=redrive_id,
                replay_task_id=row.replay_task_id)
        return
    table = DeadLetter._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, requeue_count = requeue_count + 1, "  # noqa: S608
            "requeued_at = %s, requeued_by = %s, closed_at = NULL, closed_by = '', "
            "updated_at = %s, snoozed_until = NULL, redrive_id = %s, "
            "replay_task_id = replay.task_id "
            "FROM unnest(%s::bigint[], %s::varchar[]) AS replay(id, task_id) "
            f"WHERE {table}.id = replay.id",
            [DeadLetter.Status.REQUEUED, now, actor, now, redrive_id,
             [row.pk for row in rows], [row.replay_task_id for row in rows]])


@dataclass(frozen=True)
class DiscardOutcome:
    discarded: list[int]
    refused: dict[int, str]  # dead letter id: why it was not discarded


@transaction.atomic
def dead_letters_discard(*, dead_letter_ids: Iterable[int], actor: str,
                         detail: dict[str, Any] | None = None) -> DiscardOutcome:
    """Mark open dead letters as not worth replaying (they stay for the record until
    purged), in one statement; the others are refused with the reason. Audited."""
    ids = sorted(set(dead_letter_ids))
    rows = {row.pk: row for row in DeadLetter.objects.select_for_update().filter(pk__in=ids)}
    outcome = DiscardOutcome(discarded=[], refused={})
    for pk in ids:
        row = rows.get(pk)
        reason = f"no dead letter with id {pk}" if row is None else refusal(Action.DISCARD, row)
        if reason:
            outcome.refused[pk] = f"dead letter {pk}: {reason}" if row else reason
        else:
            outcome.discarded.append(pk)
    now = timezone.now()
    DeadLetter.objects.filter(pk__in=outcome.discarded).update(
        status=DeadLetter.Status.DISCARDED, closed_at=now, closed_by=actor, updated_at=now)
    dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.DISCARDED,
                      count=len(outcome.discarded),
                      detail={"ids": ids[:AUDITED_IDS], "refused": len(outcome.refused),
                              **(detail or {})})
    return outcome


@transaction.atomic
def dead_letters_purge(*, rows: QuerySet[DeadLetter], actor: str,
                       detail: dict[str, Any] | None = None) -> int:
    """Delete the given rows, whatever their status (the caller's filter chose them);
    return how many went. Audited, with the ids of the first AUDITED_IDS."""
    ids = list(rows.values_list("pk", flat=True))
    deleted = DeadLetter.objects.filter(pk__in=ids).delete()[1].get(DeadLetter._meta.label, 0)
    dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.PURGED, count=deleted,
                      detail={"ids": ids[:AUDITED_IDS], **(detail or {})})
    return deleted


def _task_arguments(raw_body: str,
                    content_type: str) -> tuple[list[Any], dict[str, Any]] | None:
    """(args, kwargs) from a protocol-2 JSON body, or None if it is not one."""
    if content_type != "application/json":
        return None
    try:
        body = json.loads(raw_body)
    except ValueError:
        return None
    if (isinstance(body, list) and len(body) == 3 and isinstance(body[0], list)
            and isinstance(body[1], dict)):
        return body[0], body[1]
    return None
