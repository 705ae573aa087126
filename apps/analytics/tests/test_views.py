"""Analytics endpoints: validated ingestion and owner-only exports."""

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from apps.analytics.models import Event, ExportJob, HourlyRollup
from apps.analytics.tasks import recount_hour
from tests.fixtures import wait_for
from workers.core.models import OutboxMessage
from workers.dead_letters.models import DeadLetter

TOKEN = "Bearer test-ingest-token"


def post_events(client, body, token: str = TOKEN, **headers):
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/api/events/", payload, content_type="application/json",
                       headers={"Authorization": token, **headers})


def may_view_events(user):
    """Exports hold the raw events: asking for one, and downloading one's own, needs this."""
    user.user_permissions.add(Permission.objects.get(codename="view_event",
                                                     content_type__app_label="analytics"))
    return user


def an_event(**overrides) -> dict:
    return {"name": "signup", "occurred_at": "2026-11-24T10:15:00Z",
            "properties": {"plan": "pro"}} | overrides


@pytest.mark.django_db
def test_a_valid_batch_is_stored_and_accepted(client):
    response = post_events(client, {"events": [an_event(), an_event(name="login")]})
    assert response.status_code == 202
    assert response.json() == {"accepted": 2}
    assert sorted(Event.objects.values_list("name", flat=True)) == ["login", "signup"]


@pytest.mark.django_db
def test_every_bad_item_is_reported_and_nothing_of_the_batch_is_stored(client):
    batch = {"events": [
        an_event(),
        an_event(name=""),
        an_event(occurred_at="yesterday"),
        an_event(occurred_at="2026-11-24T10:15:00"),
        an_event(properties=["not", "an", "object"]),
        an_event(properties={"blob": "x" * 5000}),
        "not an object",
    ]}
    response = post_events(client, batch)

    assert response.status_code == 400
    reasons = {error["index"]: error["reason"] for error in response.json()["errors"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6]
    assert "name is required" in reasons[1]
    assert "ISO 8601" in reasons[2]
    assert "UTC offset" in reasons[3]
    assert "properties must be an object" in reasons[4]
    assert "exceed 4096 bytes" in reasons[5]
    assert not Event.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "status", "reason"), [
    ("{broken", 400, "body is not JSON"),
    ({"events": []}, 400, "a batch holds 1 to 500 events"),
    ({"events": [an_event()] * 501}, 400, "a batch holds 1 to 500 events, not 501"),
    ({"items": []}, 400, "body must be"),
])
def test_malformed_batches_get_a_clear_400(client, body, status, reason):
    response = post_events(client, body)
    assert response.status_code == status
    assert reason in str(response.json())
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_ingestion_needs_the_token_and_refuses_oversized_bodies(client, settings):
    assert post_events(client, {"events": [an_event()]}, token="Bearer wrong").status_code == 401
    assert post_events(client, {"events": [an_event()]}, token="").status_code == 401
    settings.ANALYTICS_MAX_BODY_BYTES = 100
    assert post_events(client, {"events": [an_event()] * 5}).status_code == 413
    settings.ANALYTICS_INGEST_TOKEN = ""
    assert post_events(client, {"events": [an_event()]}).status_code == 503
    assert not Event.objects.exists()


def test_an_export_runs_on_bulk_shows_progress_and_downloads_for_its_owner_only(
        live_workers, client):
    owner = may_view_events(get_user_model().objects.create_user("owner",
                                                                 password="pw-owner-123"))
    other = get_user_model().objects.create_user("other", password="pw-other-123")
    day = datetime(2026, 11, 20, 12, tzinfo=UTC)
    Event.objects.bulk_create([Event(name="signup", occurred_at=day, properties={"n": n})
                               for n in range(4500)] +
                              [Event(name="outside", occurred_at=day + timedelta(days=5))])
    client.force_login(owner)

    created = client.post("/api/exports/", {"date_from": "2026-11-20", "date_to": "2026-11-21"},
                          content_type="application/json")
    assert created.status_code == 202
    job = created.json()
    done = wait_for(lambda: (client.get(job["status_url"]).json()
                             if ExportJob.objects.get(pk=job["id"]).status == "done" else None),
                    what="the export to finish")

    assert (done["progress"], done["rows"]) == (100, 4500)
    download = client.get(done["download_url"])
    assert download.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert rows[0] == ["id", "name", "occurred_at", "properties"]
    assert len(rows) == 4501
    assert {row[1] for row in rows[1:]} == {"signup"}

    client.force_login(other)
    assert client.get(job["status_url"]).status_code == 404
    assert client.get(done["download_url"]).status_code == 404
    client.logout()
    assert client.get(done["download_url"]).status_code == 404


@pytest.mark.django_db
def test_export_requests_are_validated(client):
    user = may_view_events(get_user_model().objects.create_user("u", password="pw-u-123456"))
    assert client.post("/api/exports/", {}, content_type="application/json").status_code == 401
    client.force_login(user)
    for body in ({}, {"date_from": "2026-13-01", "date_to": "2026-12-01"},
                 {"date_from": "2026-12-02", "date_to": "2026-12-01"},
                 {"date_from": "2020-01-01", "date_to": "2026-12-01"}):
        response = client.post("/api/exports/", body, content_type="application/json")
        assert response.status_code == 400, body
    assert not ExportJob.objects.exists()


@pytest.mark.django_db
def test_an_unfinished_export_cannot_be_downloaded(client):
    user = may_view_events(get_user_model().objects.create_user("u", password="pw-u-123456"))
    job = ExportJob.objects.create(owner=user, date_from=date(2026, 1, 1),
                                   date_to=date(2026, 1, 2))
    client.force_login(user)
    assert client.get(f"/api/exports/{job.pk}/download/").status_code == 409
    assert not DeadLetter.objects.exists()


@pytest.mark.django_db
def test_the_admin_file_link_downloads_through_the_authenticated_view(client, admin_client):
    """Media is not served in production: the admin's link must be the download view,
    open to the owner (while they may view events) and to staff who may view export jobs,
    and to nobody else."""
    users = get_user_model().objects
    owner = may_view_events(users.create_user("owner", password="pw-owner-123"))
    job = ExportJob.objects.create(owner=owner, date_from=date(2026, 1, 1),
                                   date_to=date(2026, 1, 2), status=ExportJob.Status.DONE)
    job.file.save("events-1.csv", ContentFile(b"id,name,occurred_at,properties\n"))
    download_url = reverse("analytics-export-download", args=[job.pk])

    page = admin_client.get(reverse("admin:analytics_exportjob_change", args=[job.pk]))
    assert page.status_code == 200
    assert f'href="{download_url}"' in page.content.decode()
    assert job.file.url not in page.content.decode()

    viewer = users.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_exportjob"))
    staff = users.create_user("staff", password="pw-staff-123", is_staff=True)
    for user, status in ((owner, 200), (viewer, 200), (staff, 404)):
        client.force_login(user)
        response = client.get(download_url)
        assert response.status_code == status, user
        if status == 200:
            assert response["Content-Disposition"] == 'attachment; filename="events-1.csv"'
            assert response["Cache-Control"] == "no-store"
            assert b"".join(response.streaming_content).startswith(b"id,name")
    assert admin_client.get(download_url).status_code == 200


def test_a_late_event_has_its_closed_hour_recounted_by_a_standard_task(client, live_workers):
    """The ingest request enqueues `recount_hour` (Django's @task) in its transaction."""
    hour = (timezone.now() - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    Event.objects.create(name="late-signup", occurred_at=hour + timedelta(minutes=1))
    HourlyRollup.objects.create(hour=hour, name="late-signup", count=1)  # rolled up already
    late = an_event(name="late-signup", occurred_at=(hour + timedelta(minutes=20)).isoformat())

    on_time = an_event(name="on-time", occurred_at=timezone.now().isoformat())
    response = post_events(client, {"events": [late, on_time]})
    assert response.status_code == 202, response.json()

    job = OutboxMessage.objects.get(kwargs__task_path="apps.analytics.tasks.recount_hour")
    assert job.kwargs["call"] == {"hour": hour.isoformat()}
    wait_for(lambda: HourlyRollup.objects.get(hour=hour, name="late-signup").count == 2,
             what="the late event's hour to be recounted")
    # The result is written after the function's own commit: wait for it, not for the row.
    done = wait_for(lambda: (result := recount_hour.get_result(job.task_id)).is_finished
                    and result, what="the recount's result")
    assert done.return_value == 1  # type: ignore[union-attr]
