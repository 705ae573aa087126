"""Analytics services: idempotent rollups, batched, time-boxed retention, CSV exports."""

import csv
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.analytics.models import Event, ExportJob, HourlyRollup
from apps.analytics.services import events_delete_older_than, export_run, rollup_hour


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


@pytest.mark.django_db
def test_an_export_writes_properties_as_json():
    properties = {"plan": "pro", "seats": 3, "trial": True, "coupon": None, "city": "Zürich"}
    Event.objects.create(name="signup", occurred_at=datetime(2026, 11, 20, 12, tzinfo=UTC),
                         properties=properties)
    owner = get_user_model().objects.create_user("owner", password="pw-owner-123")
    job = ExportJob.objects.create(owner=owner, date_from=date(2026, 11, 20),
                                   date_to=date(2026, 11, 20))

    export_run(export_id=job.pk)

    job.refresh_from_db()
    with job.file.open("r") as exported:
        header, row = list(csv.reader(exported))
    assert header[3] == "properties"
    assert json.loads(row[3]) == properties
