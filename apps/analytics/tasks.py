"""Analytics jobs, all on `bulk`. `recount_hour` is written with Django's standard task
API (`@task`), which the platform runs as it runs its Celery tasks."""

from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from apps.analytics.services import events_delete_older_than, export_run, rollup_hour
from workers.core.routing import BULK
from workers.core.standard_tasks import task


@shared_task(route=BULK, soft_time_limit=300, time_limit=360)
def rollup_last_hour() -> None:
    rollup_hour(hour=timezone.now() - timedelta(hours=1))


@shared_task(route=BULK, soft_time_limit=330, time_limit=360)
def delete_expired_events() -> None:
    events_delete_older_than(
        cutoff=timezone.now() - timedelta(days=settings.ANALYTICS_RETENTION_DAYS),
        batch_size=settings.ANALYTICS_CLEANUP_BATCH, max_seconds=300)


@shared_task(route=BULK, soft_time_limit=540, time_limit=600, max_retries=3)
def run_export(export_id: int) -> None:
    export_run(export_id=export_id)


@task(queue_name=BULK)
def recount_hour(hour: str) -> int:
    """The rollup of one past hour again (late events): how many names it covers."""
    return rollup_hour(hour=datetime.fromisoformat(hour))
