"""Redrive: replay a frozen set of dead letters in the background, safely.

A redrive is drafted with the ids of what the operator saw (the set does not grow while
they decide), then started with a rate, a canary size and a failure threshold. Each step
runs as a short task on the critical queue and schedules the next one:

- canary: send the first `canary` rows, wait until every one of them finished; any that
  failed again pauses the redrive, else it runs;
- running: send `rate` rows per second (the step sleeps in the broker, not in a worker),
  pausing by itself once more than `max_failure_rate` of the finished replays failed again
  (at least MIN_SAMPLE of them finished);
- done when every row was handled and every replay sent has finished.

A replay that succeeds resolves its row; one that fails again becomes a new dead letter
linked to the original (`replay_of`, a "boomerang"), which is how failures are counted.
Every step carries the redrive's current step token: pausing, resuming or cancelling
issues a new token, so a step already scheduled by the old chain does nothing. A chain
lost with its worker is restarted by beat's housekeeping (`redrives_restart_stalled`).
"""

import logging
from datetime import datetime, timedelta

from celery import current_app
from celery.utils import uuid
from django.db import transaction
from django.utils import timezone

from workers.api.routing import CRITICAL, QUEUES
from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.models import DeadLetter, DeadLetterEvent, Redrive
from workers.dead_letters.services import dead_letters_requeue

logger = logging.getLogger(__name__)

STEP_TASK = "workers.tasks.redrive_step"
STEP_SECONDS = 1.0  # each step sends about a second's worth of replays
POLL_SECONDS = 1.0  # how often a waiting redrive looks at its replays again
MIN_SAMPLE = 10
STALLED_AFTER = timedelta(seconds=60)
ACTIVE = (Redrive.Status.CANARY, Redrive.Status.RUNNING)


def redrive_draft(*, dead_letter_ids: list[int], actor: str, description: str) -> Redrive:
    """Freeze the selection; nothing is sent until `redrive_start`."""
    ids = sorted(set(dead_letter_ids))
    if not ids:
        raise ValueError("nothing selected to redrive")
    return Redrive.objects.create(created_by=actor, description=description[:500],
                                  dead_letter_ids=ids)


def redrive_start(*, redrive_id: int, actor: str, rate: float, canary: int,
                  max_failure_rate: float, queue: str = "") -> Redrive:
    if not rate > 0:
        raise ValueError("the rate must be above 0 replays per second")
    if canary < 0:
        raise ValueError("the canary cannot be negative")
    if not 0 < max_failure_rate <= 1:
        raise ValueError("the failure threshold is a share between 0 and 1")
    if queue and queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; choose one of {', '.join(QUEUES)}")
    with transaction.atomic():
        redrive = Redrive.objects.select_for_update().get(pk=redrive_id)
        if redrive.status != Redrive.Status.DRAFT:
            raise ValueError(f"redrive {redrive_id} is {redrive.status}, not a draft")
        redrive.rate, redrive.canary, redrive.queue = rate, canary, queue
        redrive.max_failure_rate = max_failure_rate
        redrive.status = Redrive.Status.CANARY if canary else Redrive.Status.RUNNING
        redrive.started_at = timezone.now()
        _schedule(redrive, countdown=0)
        dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.REDRIVE,
                          count=len(redrive.dead_letter_ids),
                          detail={"redrive": redrive.pk, "started": True, "rate": rate,
                                  "canary": canary, "max_failure_rate": max_failure_rate,
                                  "queue": queue or "original",
                                  "selection": redrive.description})
    return redrive


def redrive_pause(*, redrive_id: int, actor: str) -> Redrive:
    return _set_status(redrive_id, actor=actor, status=Redrive.Status.PAUSED,
                       allowed=ACTIVE, reason=f"paused by {actor}")


def redrive_cancel(*, redrive_id: int, actor: str) -> Redrive:
    return _set_status(redrive_id, actor=actor, status=Redrive.Status.CANCELLED,
                       allowed=(*ACTIVE, Redrive.Status.PAUSED, Redrive.Status.DRAFT),
                       reason=f"cancelled by {actor}")


def redrive_resume(*, redrive_id: int, actor: str) -> Redrive:
    """Carry on from where it paused; a canary that had not passed is run again."""
    with transaction.atomic():
        redrive = Redrive.objects.select_for_update().get(pk=redrive_id)
        if redrive.status != Redrive.Status.PAUSED:
            raise ValueError(f"redrive {redrive_id} is {redrive.status}, not paused")
        canary_passed = redrive.sent > redrive.canary or not redrive.canary
        redrive.status = Redrive.Status.RUNNING if canary_passed else Redrive.Status.CANARY
        redrive.status_reason = f"resumed by {actor}"
        _schedule(redrive, countdown=0)
        dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.REDRIVE, count=0,
                          detail={"redrive": redrive.pk, "resumed": True})
    return redrive


def redrive_step(*, redrive_id: int, token: str) -> None:
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
    finished = redrive.succeeded + redrive.failed
    total = len(redrive.dead_letter_ids)
    if redrive.status == Redrive.Status.CANARY:
        if redrive.position == 0:
            _send(redrive, count=redrive.canary)
            return POLL_SECONDS
        if finished < redrive.sent:
            return POLL_SECONDS
        if redrive.failed:
            _stop(redrive, Redrive.Status.PAUSED, f"canary: {redrive.failed} of "
                  f"{redrive.sent} replays failed again; fix the cause, then resume")
            return None
        redrive.status = Redrive.Status.RUNNING
    if finished >= MIN_SAMPLE and redrive.failed > redrive.max_failure_rate * finished:
        _stop(redrive, Redrive.Status.PAUSED, f"{redrive.failed} of {finished} finished "
              f"replays failed again (over {redrive.max_failure_rate:.0%}); paused by itself")
        return None
    if redrive.position >= total:
        if finished < redrive.sent:
            return POLL_SECONDS
        _stop(redrive, Redrive.Status.DONE, f"{redrive.succeeded} succeeded, "
              f"{redrive.failed} failed again, {redrive.skipped} skipped")
        return None
    count = max(1, round(redrive.rate * STEP_SECONDS))
    _send(redrive, count=count)
    return count / redrive.rate


def _send(redrive: Redrive, *, count: int) -> None:
    batch = redrive.dead_letter_ids[redrive.position:redrive.position + count]
    outcome = dead_letters_requeue(dead_letter_ids=batch,
                                   actor=f"redrive {redrive.pk} ({redrive.created_by})",
                                   queue=redrive.queue or None, redrive_id=redrive.pk)
    redrive.position += len(batch)
    redrive.sent += len(outcome.requeued)
    redrive.skipped += len(outcome.refused)


def _count_outcomes(redrive: Redrive) -> None:
    """Succeeded: rows this redrive requeued that their replay resolved. Failed: rows
    whose replay came back as a new dead letter (a boomerang)."""
    redrive.succeeded = DeadLetter.objects.filter(
        redrive=redrive, status=DeadLetter.Status.RESOLVED).count()
    redrive.failed = (DeadLetter.objects.filter(replay_of__redrive=redrive,
                                                failed_at__gte=redrive.started_at)
                      .values("replay_of").distinct().count())


def _stop(redrive: Redrive, status: str, reason: str) -> None:
    redrive.status, redrive.status_reason = status, reason
    if status == Redrive.Status.DONE:
        redrive.finished_at = timezone.now()
    logger.info("redrive %s %s: %s", redrive.pk, status, reason)


def _schedule(redrive: Redrive, *, countdown: float) -> None:
    """Issue a new step token and send the step carrying it once this transaction commits."""
    redrive.step_token = uuid()
    redrive.save()
    args = [redrive.pk, redrive.step_token]
    transaction.on_commit(lambda: current_app.send_task(
        STEP_TASK, args=args, queue=CRITICAL, countdown=countdown))


def _set_status(redrive_id: int, *, actor: str, status: str, allowed: tuple[str, ...],
                reason: str) -> Redrive:
    with transaction.atomic():
        redrive = Redrive.objects.select_for_update().get(pk=redrive_id)
        if redrive.status not in allowed:
            raise ValueError(f"redrive {redrive_id} is {redrive.status}; cannot make it "
                             f"{status}")
        redrive.status, redrive.status_reason, redrive.step_token = status, reason, ""
        redrive.save()
        dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.REDRIVE, count=0,
                          detail={"redrive": redrive.pk, "status": status})
    return redrive
