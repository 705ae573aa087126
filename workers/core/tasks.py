"""The outbox's and the effect-once keys' housekeeping, run by beat, and the runner of
Django's standard tasks.

Platform tasks keep the names earlier releases gave them (`workers.tasks.<name>`), so that
schedules in the database, outbox rows and messages already queued still find them.
"""

from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from workers.core.effects import effects_purge_expired
from workers.core.outbox import outbox_purge_published, outbox_sweep
from workers.core.routing import BULK, CRITICAL
from workers.core.task_backend import standard_task_run


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


# Idempotent on its id (a repeat of a finished run is skipped), so the outbox may carry it.
# Every call names its queue (the function's `queue_name`).
@shared_task(name="workers.tasks.run_standard_task", bind=True, route=BULK, idempotent=True)
def run_standard_task(self: Any, task_path: str, call: dict[str, Any]) -> None:
    standard_task_run(
        result_id=self.request.id, task_path=task_path, call=call,
        worker_id=self.request.hostname or "",
        will_retry=lambda error: (isinstance(error, self.autoretry_for)
                                  and self.request.retries < self.max_retries))
