"""Redrive: replay a frozen set of dead letters in the background, safely.

A redrive is drafted with the ids of the open, replayable rows the operator saw (the set
does not grow while they decide), then started with a rate, a canary size and a failure
threshold. Each step runs as a short task on the critical queue and schedules the next:

- canary: send the first `canary` rows, wait until every one of them finished; any that
  failed again pauses the redrive, else it runs;
- running: send up to `rate` rows a second (the step waits in the broker, not in a
  worker), never more than AHEAD_SECONDS of the workers' measured pace ahead of them
  (`_ahead_limit`): while that many replays of this redrive are in flight, or that many
  jobs wait on a target queue, it sends nothing and looks again. Once at least
  MIN_SAMPLE replays of the window finished and more than `max_failure_rate` of them
  failed again, it pauses by itself;
- done when every row was handled and every replay sent has finished.

A replay that succeeds resolves its row; one that fails again becomes a new dead letter
linked to the original (`replay_of`, a "boomerang"), which is how failures are counted.

Resume opens a new observation window: only replays sent after it count towards its
canary (optional, by default the redrive's own) and its automatic pause, so the failures
that caused the pause no longer hold it paused once the cause is fixed. By default the
rows that failed again are put back in front of the rest, so the new canary tries them.

Every step carries the redrive's current step token: pausing, resuming or cancelling
issues a new token, so a step already scheduled by the old chain does nothing. A chain
lost with its worker is restarted by beat's housekeeping (`redrives_restart_stalled`).
Start, every pause (with its reason, automatic or not), resume, cancel and the end are
audit events linked to the redrive.
"""

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.utils import uuid
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from workers.core.queue_stats import queue_stats
from workers.core.routing import QUEUES
from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.models import DeadLetter, DeadLetterEvent, Redrive
from workers.dead_letters.rules import OPEN, Action
from workers.dead_letters.services import dead_letters_preview, dead_letters_send_replays

logger = logging.getLogger(__name__)

STEP_SECONDS = 1.0  # each step sends about a second's worth of replays
POLL_SECONDS = 1.0  # how often a waiting redrive looks at its replays again
MIN_SAMPLE = 10
# How far ahead of the workers a redrive may send: this many seconds at its rate, and
# never fewer than MIN_AHEAD replays (a slow rate still keeps a pool busy).
AHEAD_SECONDS = 5.0
MIN_AHEAD = 20
MIN_RATE, MAX_RATE = 0.01, 10_000.0
MAX_CANARY = 1_000  # sent at once: a bigger one is no longer a canary
STALLED_AFTER = timedelta(seconds=60)
ACTIVE = (Redrive.Status.CANARY, Redrive.Status.RUNNING)
SYSTEM = "redrive"  # the actor of what a redrive does by itself


@dataclass(frozen=True)
class Progress:
    """A redrive's figures, as the admin and the CLI show them."""

    total: int
    sent: int
    succeeded: int
    failed: int
    skipped: int
    in_flight: int
    not_sent: int
    percent: int  # of the rows whose replay finished (or that were skipped)


def redrive_progress(redrive: Redrive) -> Progress:
    """Its figures counted now: replays go on finishing while a redrive is paused, and
    its stored counts move only with its steps."""
    outcomes = _outcomes_of(redrive)
    total = len(redrive.dead_letter_ids)
    finished = outcomes.succeeded + outcomes.failed + redrive.skipped
    return Progress(total=total, sent=redrive.sent, succeeded=outcomes.succeeded,
                    failed=outcomes.failed, skipped=redrive.skipped,
                    in_flight=max(0, redrive.sent - outcomes.succeeded - outcomes.failed),
                    not_sent=max(0, total - redrive.position),
                    percent=min(100, 100 * finished // total) if total else 100)


def redrive_draft(*, dead_letter_ids: list[int], actor: str, description: str) -> Redrive:
    """Freeze the rows of the selection a redrive may replay; nothing is sent until
    `redrive_start`. Rows it may not replay are left out, and the description says how
    many and why."""
    preview = dead_letters_preview(action=Action.REDRIVE, dead_letter_ids=dead_letter_ids)
    if not preview.eligible:
        why = "; ".join(f"{count} {reason}" for reason, count in preview.left_out.items())
        raise ValueError(f"nothing selected can be redriven{': ' + why if why else ''}")
    left_out = sum(preview.left_out.values())
    if left_out:
        description += f" ({left_out} left out: " + "; ".join(
            f"{count} {reason}" for reason, count in preview.left_out.items()) + ")"
    return Redrive.objects.create(created_by=actor, description=description[:500],
                                  dead_letter_ids=preview.eligible)


def redrive_start(*, redrive_id: int, actor: str, rate: float, canary: int,
                  max_failure_rate: float, queue: str = "") -> Redrive:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"the rate is between {MIN_RATE:g} and {MAX_RATE:g} replays a second")
    _check_canary(canary)
    if not 0 < max_failure_rate <= 1:
        raise ValueError("the failure threshold is above 0 and at most 1 (100%)")
    if queue and queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; choose one of {', '.join(QUEUES)}")
    with transaction.atomic():
        redrive = Redrive.objects.select_for_update().get(pk=redrive_id)
        if redrive.status != Redrive.Status.DRAFT:
            raise ValueError(f"redrive {redrive_id} is {redrive.status}, not a draft")
        canary = min(canary, len(redrive.dead_letter_ids))
        redrive.rate, redrive.canary, redrive.queue = rate, canary, queue
        redrive.max_failure_rate = max_failure_rate
        redrive.started_at = timezone.now()
        _open_window(redrive, canary=canary)
        _schedule(redrive, countdown=0)
        _audit(redrive, actor=actor, action=DeadLetterEvent.Action.REDRIVE,
               count=len(redrive.dead_letter_ids),
               detail={"rate": rate, "canary": canary, "max_failure_rate": max_failure_rate,
                       "queue": queue or "original", "selection": redrive.description})
    return redrive


def redrive_pause(*, redrive_id: int, actor: str) -> Redrive:
    return _set_status(redrive_id, actor=actor, status=Redrive.Status.PAUSED,
                       allowed=ACTIVE, reason=f"paused by {actor}",
                       action=DeadLetterEvent.Action.REDRIVE_PAUSED)


def redrive_cancel(*, redrive_id: int, actor: str) -> Redrive:
    return _set_status(redrive_id, actor=actor, status=Redrive.Status.CANCELLED,
                       allowed=(*ACTIVE, Redrive.Status.PAUSED, Redrive.Status.DRAFT),
                       reason=f"cancelled by {actor}",
                       action=DeadLetterEvent.Action.REDRIVE_CANCELLED)


def redrive_resume(*, redrive_id: int, actor: str, canary: int | None = None,
                   retry_failed: bool = True) -> Redrive:
    """Go on from where it paused, in a new observation window: a canary of `canary`
    rows first (None: the redrive's own size; 0: none), and with `retry_failed` the rows
    that failed again before the pause put back in front of the rest."""
    if canary is not None:
        _check_canary(canary)
    with transaction.atomic():
        redrive = Redrive.objects.select_for_update().get(pk=redrive_id)
        if redrive.status != Redrive.Status.PAUSED:
            raise ValueError(f"redrive {redrive_id} is {redrive.status}, not paused")
        retried = _put_back_failed(redrive) if retry_failed else 0
        window_canary = min(redrive.canary if canary is None else canary,
                            len(redrive.dead_letter_ids))
        _open_window(redrive, canary=window_canary)
        redrive.status_reason = f"resumed by {actor}"
        _schedule(redrive, countdown=0)
        _audit(redrive, actor=actor, action=DeadLetterEvent.Action.REDRIVE_RESUMED,
               count=retried, detail={"canary": window_canary, "failed_put_back": retried})
    return redrive


def _check_canary(canary: int) -> None:
    if not 0 <= canary <= MAX_CANARY:
        raise ValueError(f"the canary is between 0 and {MAX_CANARY:,} replays")


def redrive_advance(*, redrive_id: int, token: str) -> None:
    """One step of a redrive's chain (see the module docstring); schedules the next."""
    with transaction.atomic():
        redrive = Redrive.objects.select_for_update().filter(pk=redrive_id).first()
        if redrive is None or redrive.status not in ACTIVE or token != redrive.step_token:
            return  # finished, paused, cancelled, or a superseded chain
        _count_outcomes(redrive)
        delay = _advance(redrive)
        if delay is None:
            redrive.step_token = ""
            redrive.save()
        else:
            _schedule(redrive, countdown=delay)


def redrives_restart_stalled(*, now: datetime) -> int:
    """Active redrives whose chain stopped (its worker died mid-step): start a new chain."""
    restarted = 0
    for pk in Redrive.objects.filter(status__in=ACTIVE, updated_at__lt=now - STALLED_AFTER
                                     ).values_list("pk", flat=True):
        with transaction.atomic():
            redrive = Redrive.objects.select_for_update().get(pk=pk)
            if redrive.status in ACTIVE:
                _schedule(redrive, countdown=0)
                restarted += 1
    return restarted


def _advance(redrive: Redrive) -> float | None:
    """Send what is due; the seconds until the next step, or None when it stopped."""
    window = _window_outcomes(redrive)
    window_finished = window.succeeded + window.failed
    if redrive.status == Redrive.Status.CANARY:
        if redrive.window_sent == 0:
            _send(redrive, count=redrive.window_canary)
            if redrive.window_sent:
                return POLL_SECONDS
            # nothing left to try: fall through to the end
        elif window_finished < redrive.window_sent:
            return POLL_SECONDS
        elif window.failed:
            _pause(redrive, f"canary: {window.failed} of {redrive.window_sent} replays "
                   "failed again; fix the cause, then resume")
            return None
        redrive.status = Redrive.Status.RUNNING
    if (window_finished >= MIN_SAMPLE
            and window.failed > redrive.max_failure_rate * window_finished):
        _pause(redrive, f"{window.failed} of {window_finished} finished replays failed "
               f"again (over {redrive.max_failure_rate:.0%}); paused by itself")
        return None
    in_flight = redrive.sent - redrive.succeeded - redrive.failed
    if redrive.position >= len(redrive.dead_letter_ids):
        if in_flight > 0:
            return POLL_SECONDS
        _finish(redrive)
        return None
    limit = _ahead_limit(redrive, finished=window_finished)
    ahead = max(in_flight, _waiting(redrive))
    count = min(max(1, round(redrive.rate * STEP_SECONDS)), limit - ahead)
    if count <= 0:
        redrive.status_reason = (f"waiting for the workers: {ahead} replays ahead of them "
                                 f"(at most {limit})")
        return POLL_SECONDS
    redrive.status_reason = ""
    _send(redrive, count=count)
    # At least a step: RabbitMQ's native delayed delivery takes whole seconds and refuses
    # a countdown under one (a step held back by the bound sends less than its rate).
    return max(count / redrive.rate, STEP_SECONDS)


def _ahead_limit(redrive: Redrive, *, finished: int) -> int:
    """How many replays may be ahead of the workers: AHEAD_SECONDS of what they proved
    they finish a second in this window (never above the asked rate), at least MIN_AHEAD.
    A rate above what the pool drains then only fills the queue that far, like TCP's
    slow start: the bound grows as the workers show they keep up."""
    started = redrive.window_started_at or timezone.now()
    seconds = max(1.0, (timezone.now() - started).total_seconds())
    pace = min(redrive.rate, finished / seconds)
    return max(MIN_AHEAD, math.ceil(pace * AHEAD_SECONDS))


def _send(redrive: Redrive, *, count: int) -> None:
    batch = redrive.dead_letter_ids[redrive.position:redrive.position + count]
    outcome = dead_letters_send_replays(dead_letter_ids=batch,
                                        actor=f"redrive {redrive.pk} ({redrive.created_by})",
                                        queue=redrive.queue or None, redrive_id=redrive.pk)
    redrive.position += len(batch)
    redrive.sent += len(outcome.requeued)
    redrive.window_sent += len(outcome.requeued)
    redrive.skipped += len(outcome.refused)


def _waiting(redrive: Redrive) -> int:
    """Jobs waiting on the queues this redrive's next rows go to."""
    queues: tuple[str, ...] = (redrive.queue,)
    if not redrive.queue:
        upcoming = redrive.dead_letter_ids[redrive.position:redrive.position + MIN_AHEAD]
        queues = tuple(sorted(set(DeadLetter.objects.filter(pk__in=upcoming)
                                  .values_list("queue", flat=True)) & set(QUEUES)))
    try:
        return max((stats.waiting for stats in queue_stats(queues=queues)), default=0)
    except (OSError, RedisError, OperationalError) as error:
        # Pacing is best effort: the replays go through the outbox, which waits for a
        # broker that does not answer; the in-flight bound still holds.
        logger.warning("redrive %s: cannot read the queues' depth (%s)", redrive.pk, error)
        return 0


@dataclass(frozen=True)
class _Outcomes:
    succeeded: int
    failed: int


def _count_outcomes(redrive: Redrive) -> None:
    outcomes = _outcomes_of(redrive)
    redrive.succeeded, redrive.failed = outcomes.succeeded, outcomes.failed


def _outcomes_of(redrive: Redrive) -> _Outcomes:
    """Succeeded: rows this redrive requeued that their replay resolved. Failed: rows
    whose replay came back as a new dead letter (a boomerang)."""
    if redrive.started_at is None:
        return _Outcomes(succeeded=0, failed=0)
    return _outcomes(DeadLetter.objects.filter(redrive=redrive))


def _window_outcomes(redrive: Redrive) -> _Outcomes:
    """The outcomes of the replays sent in the current window only."""
    since = redrive.window_started_at or timezone.now()
    return _outcomes(DeadLetter.objects.filter(redrive=redrive, requeued_at__gte=since))


def _outcomes(sent: QuerySet[DeadLetter]) -> _Outcomes:
    """A sent row ends resolved (its replay succeeded) or superseded (it failed again)."""
    counts = dict(sent.filter(status__in=(DeadLetter.Status.RESOLVED,
                                          DeadLetter.Status.SUPERSEDED))
                  .order_by().values_list("status").annotate(n=Count("id")))
    return _Outcomes(succeeded=counts.get(DeadLetter.Status.RESOLVED, 0),
                     failed=counts.get(DeadLetter.Status.SUPERSEDED, 0))


def _put_back_failed(redrive: Redrive) -> int:
    """Put the open rows that came back from this redrive's replays (the boomerangs) in
    front of the rows not sent yet; return how many."""
    known = set(redrive.dead_letter_ids)
    failed = [pk for pk in DeadLetter.objects.filter(
        replay_of__redrive=redrive, status__in=OPEN).order_by("pk").values_list("pk", flat=True)
        if pk not in known]
    ids = redrive.dead_letter_ids
    redrive.dead_letter_ids = [*ids[:redrive.position], *failed, *ids[redrive.position:]]
    return len(failed)


def _open_window(redrive: Redrive, *, canary: int) -> None:
    redrive.window_started_at = timezone.now()
    redrive.window_canary, redrive.window_sent = canary, 0
    redrive.status = Redrive.Status.CANARY if canary else Redrive.Status.RUNNING


def _pause(redrive: Redrive, reason: str) -> None:
    redrive.status, redrive.status_reason = Redrive.Status.PAUSED, reason
    _audit(redrive, actor=SYSTEM, action=DeadLetterEvent.Action.REDRIVE_PAUSED, count=0,
           text=reason)
    logger.info("redrive %s paused: %s", redrive.pk, reason)


def _finish(redrive: Redrive) -> None:
    reason = (f"{redrive.succeeded} succeeded, {redrive.failed} failed again, "
              f"{redrive.skipped} skipped")
    redrive.status, redrive.status_reason = Redrive.Status.DONE, reason
    redrive.finished_at = timezone.now()
    _audit(redrive, actor=SYSTEM, action=DeadLetterEvent.Action.REDRIVE_DONE,
           count=redrive.succeeded, text=reason)
    logger.info("redrive %s done: %s", redrive.pk, reason)


def _schedule(redrive: Redrive, *, countdown: float) -> None:
    """Issue a new step token and send the step carrying it once this transaction commits."""
    redrive.step_token = uuid()
    redrive.save()
    from workers.dead_letters.tasks import redrive_step

    args = (redrive.pk, redrive.step_token)
    transaction.on_commit(lambda: redrive_step.apply_async(args, countdown=countdown))


def _set_status(redrive_id: int, *, actor: str, status: str, allowed: tuple[str, ...],
                reason: str, action: str) -> Redrive:
    with transaction.atomic():
        redrive = Redrive.objects.select_for_update().get(pk=redrive_id)
        if redrive.status not in allowed:
            raise ValueError(f"redrive {redrive_id} is {redrive.status}; cannot make it "
                             f"{status}")
        redrive.status, redrive.status_reason, redrive.step_token = status, reason, ""
        redrive.save()
        _audit(redrive, actor=actor, action=action, count=0, text=reason)
    return redrive


def _audit(redrive: Redrive, *, actor: str, action: str, count: int, text: str = "",
           detail: dict | None = None) -> None:
    dead_letter_audit(actor=actor, action=action, redrive=redrive, count=count, text=text,
                      detail={"redrive": redrive.pk, **(detail or {})})
