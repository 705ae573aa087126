"""Platform tasks: housekeeping run by beat, and those the ops commands use."""

import time
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from workers.api.effects import effects_purge_expired
from workers.api.exceptions import PermanentError
from workers.api.outbox import outbox_purge_published, outbox_sweep
from workers.api.routing import BULK, CRITICAL
from workers.dead_letters.housekeeping import dead_letters_housekeep
from workers.dead_letters.redrive import redrive_step as redrive_advance
from workers.dead_letters.services import dead_letters_drain_spool
from workers.ops.alerts.services import alert_deliver


@shared_task(route=CRITICAL, soft_time_limit=60, time_limit=90)
def sweep_outbox() -> None:
    outbox_sweep(now=timezone.now())


@shared_task(route=CRITICAL, soft_time_limit=60, time_limit=90)
def drain_dead_letter_spool() -> None:
    dead_letters_drain_spool()


@shared_task(route=CRITICAL, soft_time_limit=60, time_limit=90)
def housekeep_dead_letters() -> None:
    dead_letters_housekeep(now=timezone.now())


@shared_task(route=CRITICAL, max_retries=0, soft_time_limit=60, time_limit=90)
def redrive_step(redrive_id: int, token: str) -> None:
    """One step of a redrive; it schedules the next itself (a lost chain is restarted by
    the housekeeping above, not retried here)."""
    redrive_advance(redrive_id=redrive_id, token=token)


@shared_task(route=BULK, soft_time_limit=300, time_limit=360)
def purge_expired_records() -> None:
    now = timezone.now()
    effects_purge_expired(now=now)
    outbox_purge_published(before=now - timedelta(hours=settings.OUTBOX_RETENTION_HOURS))


@shared_task(route=CRITICAL, max_retries=0, soft_time_limit=60, time_limit=90)
def deliver_alert(alert_id: int) -> None:
    """A failed delivery is not retried here but by the alert checks' sweep, with the
    row's backoff: an alert that cannot be sent must not become a dead letter that alerts."""
    alert_deliver(alert_id=alert_id)


@shared_task(route=CRITICAL, bind=True, ignore_result=False, max_retries=0)
def probe(self: Task, sent_at: float) -> dict[str, Any]:
    """Echo back who ran it and when, so the caller can time the round trip."""
    return {"sent_at": sent_at, "started_at": time.time(), "worker": self.request.hostname}


@shared_task(route=CRITICAL, max_retries=0)
def dead_letter_drill(reason: str) -> None:
    """Fail permanently on purpose: proves that failures reach the dead-letter table."""
    raise PermanentError(f"dead-letter drill: {reason}")
