"""Analytics services: idempotent rollups and batched, time-boxed retention."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.analytics.models import Event, HourlyRollup
from apps.analytics.services import events_delete_older_than, rollup_hour


@pytest.mark.django_db
def test_rerunning_a_rollup_gives_the_same_numbers():
    hour = datetime(2026, 11, 24, 10, tzinfo=UTC)
    Event.objects.bulk_create([Event(name="signup", occurred_at=hour + timedelta(minutes=m))
                               for m in (1, 20, 59)] +
                              [Event(name="login", occurred_at=hour + timedelta(minutes=5)),
                               Event(name="signup", occurred_at=hour + timedelta(hours=1))])
    assert rollup_hour(hour=hour + timedelta(minutes=30)) == 2
    Event.objects.create(name="login", occurred_at=hour + timedelta(minutes=7))  # late arrival
    rollup_hour(hour=hour)
    rollup_hour(hour=hour)
    assert dict(HourlyRollup.objects.filter(hour=hour).values_list("name", "count")) == {
        "signup": 3, "login": 2}


@pytest.mark.django_db
def test_retention_deletes_only_old_events_in_batches():
    now = timezone.now()
    Event.objects.bulk_create([Event(name="old", occurred_at=now - timedelta(days=100))] * 25 +
                              [Event(name="new", occurred_at=now - timedelta(days=1))] * 3)
    with CaptureQueriesContext(connection) as queries:
        deleted = events_delete_older_than(cutoff=now - timedelta(days=90), batch_size=10)
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert deleted == 25
    assert len(deletes) == 3  # 10 + 10 + 5, never one statement for everything
    assert set(Event.objects.values_list("name", flat=True)) == {"new"}


@pytest.mark.django_db
def test_retention_stops_at_its_time_box():
    Event.objects.bulk_create([Event(name="old", occurred_at=timezone.now() - timedelta(days=99))]
                              * 5)
    assert events_delete_older_than(cutoff=timezone.now(), batch_size=1, max_seconds=0) == 0
    assert Event.objects.count() == 5
