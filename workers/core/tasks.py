"""The outbox's and the effect-once keys' housekeeping, run by beat.

Platform tasks keep the names earlier releases gave them (`workers.tasks.<name>`), so that
schedules in the database, outbox rows and messages already queued still find them.
"""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from workers.core.effects import effects_purge_expired
from workers.core.outbox import outbox_purge_published, outbox_sweep
from workers.core.routing import BULK, CRITICAL


@shared_task(name="workers.tasks.sweep_outbox", route=CRITICAL, soft_time_limit=60,
             time_limit=90)
def sweep_outbox() -> None:
    outbox_sweep(now=timezone.now())


@shared_task(name="workers.tasks.purge_expired_records", route=BULK, soft_time_limit=300,
             time_limit=360)
def purge_expired_records() -> None:
    now = timezone.now()
    effects_purge_expired(now=now)
    outbox_purge_published(before=now - timedelta(hours=settings.OUTBOX_RETENTION_HOURS))
