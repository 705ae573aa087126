"""Analytics jobs (routed to `bulk` by workers.routing)."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from apps.analytics.services import rollup_hour


@shared_task(soft_time_limit=300, time_limit=360)
def rollup_last_hour() -> None:
    rollup_hour(hour=timezone.now() - timedelta(hours=1))
