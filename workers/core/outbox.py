"""Transactional enqueue (the outbox): a job exists if and only if its transaction commits.

`on_commit` alone loses the job when the process dies between the commit and the
publish, or when Redis is down at that moment. Here the job is a row written in the
caller's transaction; it is published right after commit and, failing that, by the
sweeper that beat runs every few seconds. The sweeper claims rows with
`SELECT … FOR UPDATE SKIP LOCKED`, so any number of sweepers can run, and leaves rows
younger than OUTBOX_SWEEP_GRACE to the publisher that follows their commit.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from celery.utils import uuid
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F, Min, QuerySet
from kombu.exceptions import OperationalError

from workers.core.broker_health import broker_reachable
from workers.core.correlation import correlation_id
from workers.core.headers import CORRELATION_HEADER, ROW_OWN_HEADERS
from workers.core.models import OutboxMessage
from workers.core.one_round_trip import execute_in_one_round_trip, refuse_longer_than_columns
from workers.core.outbox_marks import mark_published, outbox_marks_note
from workers.core.routing import queue_for

logger = logging.getLogger(__name__)

# When this thread last published without a broker error (monotonic seconds).
_last_publish = threading.local()


def outbox_enqueue(*, task_name: str, args: list[Any] | tuple[Any, ...] = (),
                   kwargs: dict[str, Any] | None = None, queue: str | None = None,
                   task_id: str | None = None, headers: dict[str, Any] | None = None,
                   eta: datetime | None = None, priority: int | None = None) -> OutboxMessage:
    """Write the job in the current transaction and publish it once that commits; what no
    message could be built from is refused here (`outbox_enqueue_many`)."""
    (row,) = outbox_enqueue_many(jobs=[OutboxMessage(
        task_id=task_id or uuid(), task_name=task_name, queue=queue or queue_for(task_name),
        args=list(args), kwargs=dict(kwargs or {}), headers=dict(headers or {}), eta=eta,
        priority=priority)])
    return row


def outbox_enqueue_many(*, jobs: list[OutboxMessage]) -> list[OutboxMessage]:
    """Write many jobs with one INSERT; they are published together once it commits.

    Each keeps the correlation id bound now: the sweeper may publish it from elsewhere.
    Refused with ValueError, nothing written: a queue no worker is declared for, an empty
    task id (Celery would publish the job under a new one, and the sweeper under yet
    another), and a header Celery writes itself (`ROW_OWN_HEADERS`). Found by the
    publisher after the commit, each would wait in the outbox for good.
    """
    _refuse_unpublishable(jobs)
    bound = correlation_id()
    if bound:
        for job in jobs:
            job.headers.setdefault(CORRELATION_HEADER, bound)
    rows = _insert(jobs)
    if rows:
        # Django drops the callback if this savepoint or transaction rolls back, so only
        # rows that committed are ever published.
        transaction.on_commit(lambda: _publish_committed(rows))
    return rows


def _refuse_unpublishable(jobs: list[OutboxMessage]) -> None:
    for queue in {job.queue for job in jobs}:
        if queue not in current_app.amqp.queues:
            raise ValueError(f"no queue named {queue!r} is declared (CELERY_TASK_QUEUES)")
    for job in jobs:
        if not isinstance(job.task_id, str) or not job.task_id:
            raise ValueError(f"a job's task id must be non-empty text, not {job.task_id!r}")
        if job.headers and not ROW_OWN_HEADERS.isdisjoint(job.headers):
            raise ValueError("a job's headers may not replace what Celery writes: "
                             f"{sorted(ROW_OWN_HEADERS.intersection(job.headers))}")


def _insert(jobs: list[OutboxMessage]) -> list[OutboxMessage]:
    """The rows, written with one statement. On PostgreSQL a raw INSERT, of a single row's
    VALUES or of the rows sent as one JSON document: the ORM's bulk_create spent as long
    building its statement, value by value, as the database took to run it, and arrays,
    one a column, cost psycopg a Python call a value (docs/performance.md)."""
    if connection.vendor != "postgresql" or not jobs:
        return OutboxMessage.objects.bulk_create(jobs)
    refuse_longer_than_columns(OutboxMessage, {  # the longest of each: once a batch
        field: max((getattr(job, field) for job in jobs), key=len)
        for field in ("task_id", "task_name", "queue")})
    insert = (f"INSERT INTO {OutboxMessage._meta.db_table} "  # the model's table
              f"({', '.join(_COLUMNS)}, publish_attempts, last_error) ")
    if len(jobs) == 1:
        # A row's VALUES cost PostgreSQL less than a document's rows, and sent as one
        # simple query it costs no round trip for psycopg's BEGIN and no parameters
        # adapted (workers/core/one_round_trip.py).
        (job,) = jobs
        cells = ", ".join(f"{{}}::{kind}" for kind in _COLUMNS.values())
        pk = execute_in_one_round_trip(f"{insert}VALUES ({cells}, 0, '') RETURNING id", [
            job.task_id, job.task_name, job.queue, json.dumps(job.args),
            json.dumps(job.kwargs), json.dumps(job.headers), job.eta, job.priority,
            job.created_at])
        ids = {job.task_id: int(pk.get_value(0, 0) or b"")}  # text: b"42"
    else:
        # One json.dumps of the batch, in C; jsonb refuses what text cannot hold (a NUL,
        # a lone surrogate) as a DataError, with nothing stored.
        document = json.dumps([[
            job.task_id, job.task_name, job.queue, job.args, job.kwargs, job.headers,
            job.eta and job.eta.isoformat(), job.priority, job.created_at.isoformat(),
        ] for job in jobs])
        cells = ", ".join(f"(job->>{n})::{kind}" if kind != "jsonb" else f"job->{n}"
                          for n, kind in enumerate(_COLUMNS.values()))
        with connection.cursor() as cursor:
            cursor.execute(f"{insert}SELECT {cells}, 0, '' "  # noqa: S608
                           "FROM jsonb_array_elements(%s::jsonb) AS job RETURNING id, task_id",
                           [document])
            ids = {task_id: pk for pk, task_id in cursor.fetchall()}
    for job in jobs:
        job.pk = ids[job.task_id]
        job._state.adding, job._state.db = False, connection.alias
    return jobs


#: The columns a job's INSERT writes, with their types.
_COLUMNS = {"task_id": "varchar", "task_name": "varchar", "queue": "varchar", "args": "jsonb",
            "kwargs": "jsonb", "headers": "jsonb", "eta": "timestamptz",
            "priority": "smallint", "created_at": "timestamptz"}


def _publish_committed(rows: list[OutboxMessage]) -> None:
    """Publish committed rows from memory, in batches.

    No claim is needed: the sweeper leaves rows alone for OUTBOX_SWEEP_GRACE.
    """
    try:
        for start in range(0, len(rows), settings.OUTBOX_BATCH):
            batch = rows[start:start + settings.OUTBOX_BATCH]
            sent, refused = _publish(batch, mark=outbox_marks_note)
            if sent + len(refused) < len(batch):  # the broker failed: the rest waits too
                return
    except DatabaseError as exc:
        # What the caller did is committed, jobs included: the sweeper publishes them.
        # Raising here would fail a request whose work is done (and a webhook's sender
        # would retry it for nothing).
        logger.warning("outbox: %d job(s) left for the sweeper, database error while "
                       "publishing after commit: %s", len(rows), exc)


def outbox_sweep(*, now: datetime) -> int:
    """Publish every row left unpublished for longer than OUTBOX_SWEEP_GRACE; return how many.

    The grace leaves fresh rows to the publisher that runs right after their commit.
    """
    cutoff = now - timedelta(seconds=settings.OUTBOX_SWEEP_GRACE)
    pending = OutboxMessage.objects.filter(published_at__isnull=True, created_at__lte=cutoff)
    published, refused = 0, list[int]()
    while True:
        # Rows refused in this sweep are not claimed again by it: they would come back in
        # every batch, the others behind them.
        sent, refused_now = outbox_publish(pending=pending.exclude(pk__in=refused))
        published += sent
        refused += refused_now
        if sent + len(refused_now) < settings.OUTBOX_BATCH:  # nothing left that is not locked
            return published


def outbox_publish(*, pending: QuerySet[OutboxMessage]) -> tuple[int, list[int]]:
    """Claim up to OUTBOX_BATCH unpublished rows, publish them, mark them; return how many
    were published and the ids of those refused as unpublishable (`_publish`).

    Rows are claimed with `SELECT … FOR UPDATE SKIP LOCKED`, so sweepers on many hosts
    never publish the same row at once.
    """
    with transaction.atomic():
        rows = list(pending.filter(published_at__isnull=True)
                    .select_for_update(skip_locked=True)[:settings.OUTBOX_BATCH])
        # Marked before the claim's locks go: a mark noted for later would let the next
        # sweep send them again.
        return _publish(rows, mark=mark_published) if rows else (0, [])


def _publish(rows: list[OutboxMessage], *,
             mark: Callable[..., None]) -> tuple[int, list[int]]:
    """Send the rows in one batch, then have `mark` mark them sent; return how many were
    sent (after a broker error none: the sweeper sends the batch again, doubles allowed)
    and the ids of rows refused before any broker was asked.

    A refused row is one no message can be built from, such as a job for a queue a deploy
    removed: it keeps its error and waits, and the others go. Raised, it rolled the
    sweeper's claim back, and the same batch failed again on every sweep.

    Never raises for a broker outage: the rows stay pending for the sweeper. The caller
    is often a request that has already committed and must neither fail nor wait for
    Redis's client retries, hence the quick ping first (skipped while publishing works).
    """
    if not _broker_answering():
        logger.warning("outbox: broker unreachable, jobs left for the sweeper")
        return 0, []
    refused: dict[int, Exception] = {}
    try:
        # The app's AMQP class is the runtime's RedactingAMQP (config/celery.py).
        with current_app.amqp.publishing_batch() as batch:  # type: ignore[attr-defined]
            for row in rows:
                try:
                    batch.send(row.task_name, args=row.args, kwargs=row.kwargs,
                               queue=row.queue, task_id=row.task_id, headers=row.headers,
                               eta=row.eta, priority=row.priority)
                except OperationalError:
                    raise
                except Exception as exc:  # this row's own: kept with it
                    refused[row.pk] = exc
    except OperationalError as exc:  # some may have gone: sending them again is allowed
        _last_publish.at = 0.0
        logger.warning("outbox: %d job(s) left for the sweeper, the broker did not take them: %s",
                       len(rows), exc)
        OutboxMessage.objects.filter(pk__in=[row.pk for row in rows]).update(
            publish_attempts=F("publish_attempts") + 1, last_error=str(exc)[:2000])
        return 0, []
    _last_publish.at = time.monotonic()
    sent = [row.pk for row in rows if row.pk not in refused]
    mark(ids=sent)
    for pk, error in refused.items():
        logger.error("outbox: job %s cannot be published, kept with its error: %r", pk, error)
        OutboxMessage.objects.filter(pk=pk).update(
            publish_attempts=F("publish_attempts") + 1, last_error=repr(error)[:2000])
    return len(sent), list(refused)


def _broker_answering() -> bool:
    """True if this thread published within the last second, or the broker answers a ping."""
    return time.monotonic() - getattr(_last_publish, "at", 0.0) < 1.0 or broker_reachable()


def outbox_purge_published(*, before: datetime) -> int:
    """Delete rows published before `before`; return how many."""
    deleted, _ = OutboxMessage.objects.filter(published_at__lt=before).delete()
    return deleted


def outbox_pending_stats(*, now: datetime) -> tuple[int, float | None]:
    """How many rows are unpublished, and the oldest one's age in seconds (None if none):
    what `manage.py outbox`, `/metrics` and the outbox alert all report."""
    pending = OutboxMessage.objects.filter(published_at__isnull=True).order_by().aggregate(
        n=Count("id"), oldest=Min("created_at"))
    oldest = pending["oldest"]
    return pending["n"], None if oldest is None else max(0.0, (now - oldest).total_seconds())
