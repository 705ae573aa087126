"""Rollups: counts per event name and hour, safe to recompute."""

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count

from apps.analytics.models import Event, HourlyRollup


@transaction.atomic
def rollup_hour(*, hour: datetime) -> int:
    """Recount one hour into HourlyRollup and return how many names it covered.

    An upsert, so running it again (a retry, a redelivery, a manual backfill) gives the
    same numbers instead of adding them twice.
    """
    start = hour.replace(minute=0, second=0, microsecond=0)
    counts = (
        Event.objects.filter(occurred_at__gte=start, occurred_at__lt=start + timedelta(hours=1))
        .values("name")
        .annotate(total=Count("id"))
    )
    rows = [HourlyRollup(hour=start, name=row["name"], count=row["total"]) for row in counts]
    HourlyRollup.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["hour", "name"], update_fields=["count"]
    )
    return len(rows)
