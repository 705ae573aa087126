"""Confirmed bulk actions, roles, audited payload views, lifecycle states, every attempt's
error."""

import csv
import io
import json
from datetime import timedelta

import pytest
from celery.utils import uuid
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from tests import tasks
from tests.factories import DeadLetterFactory, dead_letter_roles
from tests.waits import dead_letter
from workers.dead_letters.lifecycle import (
    dead_letter_note,
    dead_letters_acknowledge,
    dead_letters_snooze,
    dead_letters_wake_snoozed,
)
from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.dead_letters.retention import dead_letters_apply_retention

CHANGELIST = "admin:workers_deadletter_changelist"


@pytest.mark.django_db
def test_discarding_many_asks_for_the_count_and_touches_only_the_rows_shown(admin_client):
    shown = DeadLetterFactory.create_batch(150, task_name="app.tasks.sync")
    url = reverse(CHANGELIST) + "?task_name=app.tasks.sync"
    page = admin_client.post(url, {"action": "discard", "_selected_action": [shown[0].pk],
                                   "select_across": "1"}).content.decode()
    assert "Discard 150 dead letter(s)?" in page
    assert 'name="typed"' in page
    frozen = page.split('name="frozen_ids" value="')[1].split('"')[0]
    late = DeadLetterFactory(task_name="app.tasks.sync")  # arrives while the page is open

    form = {"action": "discard", "_selected_action": [shown[0].pk], "select_across": "1",
            "confirmed": "yes", "frozen_ids": frozen}
    admin_client.post(url, {**form, "typed": "15"})
    assert not DeadLetter.objects.filter(status=DeadLetter.Status.DISCARDED).exists()

    result = admin_client.post(url, {**form, "typed": "150"}).content.decode()
    assert "150 of 150 dead letter(s) discarded" in result
    assert DeadLetter.objects.filter(status=DeadLetter.Status.DISCARDED).count() == 150
    late.refresh_from_db()
    assert late.status == DeadLetter.Status.NEW
    event = DeadLetterEvent.objects.get(action=DeadLetterEvent.Action.DISCARDED)
    assert (event.actor, event.count, event.detail["filter"]) == (
        "admin", 150, {"task_name": "app.tasks.sync"})


@pytest.mark.django_db
def test_a_viewer_sees_rows_and_groups_but_no_action_and_no_payload(client):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    dead_letter_roles()
    viewer.groups.add(Group.objects.get(name="Dead-letter viewers"))
    client.force_login(viewer)
    row = DeadLetterFactory(kwargs={"card_number": "4242424242424242"})

    listing = client.get(reverse(CHANGELIST)).content.decode()
    assert row.task_name in listing
    assert 'value="requeue"' not in listing
    assert 'value="discard"' not in listing
    assert 'value="export_csv"' in listing  # redacted: a viewer may take the list away
    groups = client.get(reverse("admin:workers_deadletter_groups")).content.decode()
    assert "invalid input" in groups
    assert 'value="redrive"' not in groups
    assert 'value="acknowledge"' not in groups
    detail = client.get(reverse("admin:workers_deadletter_change", args=[row.pk]),
                        {"unredacted": "1"}).content.decode()
    assert "4242424242424242" not in detail
    assert 'value="requeue"' not in detail
    assert "Show unredacted" not in detail
    assert client.post(reverse("admin:workers_deadletter_groups"),
                       {"action": "redrive", "fingerprint": row.fingerprint}).status_code == 403
    assert not DeadLetterEvent.objects.exists()


@pytest.mark.django_db
def test_an_unredacted_payload_is_shown_only_when_asked_and_the_view_is_recorded(admin_client):
    row = DeadLetterFactory(kwargs={"card_number": "4242424242424242"})
    url = reverse("admin:workers_deadletter_change", args=[row.pk])
    assert "4242424242424242" not in admin_client.get(url).content.decode()
    assert "4242424242424242" in admin_client.get(url, {"unredacted": "1"}).content.decode()
    event = DeadLetterEvent.objects.get()
    assert (event.action, event.actor, event.dead_letter) == ("viewed_payload", "admin", row)

    admin_client.post(url, {"note": "card processor outage, see INC-42"})
    assert "INC-42" in admin_client.get(url).content.decode()


@pytest.mark.django_db
def test_acknowledge_snooze_wake_and_notes():
    first, second = DeadLetterFactory.create_batch(2)
    assert dead_letters_acknowledge(dead_letter_ids=[first.pk], actor="ops") == 1
    until = timezone.now() + timedelta(hours=2)
    assert dead_letters_snooze(dead_letter_ids=[second.pk], until=until, actor="ops") == 1
    with pytest.raises(ValueError, match="must end in the future"):
        dead_letters_snooze(dead_letter_ids=[first.pk], until=timezone.now(), actor="ops")
    assert dead_letters_wake_snoozed(now=timezone.now()) == 0
    assert dead_letters_wake_snoozed(now=until) == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("acknowledged", "new")
    with pytest.raises(ValueError, match="needs some text"):
        dead_letter_note(actor="ops", text="  ", dead_letter=first)
    dead_letter_note(actor="ops", text="owned by billing", fingerprint=first.fingerprint)
    assert [event.action for event in DeadLetterEvent.objects.order_by("at")] == [
        "acknowledged", "snoozed", "note"]


def test_every_attempts_error_is_kept(live_workers):
    result = tasks.transient_until.apply_async(args=[uuid(), 99], queue="critical")
    row = dead_letter(result.id)
    assert row.attempts == 3
    assert [(entry["attempt"], entry["exception_type"]) for entry in row.attempt_errors] == [
        (1, "workers.core.exceptions.TransientError"),
        (2, "workers.core.exceptions.TransientError")]
    assert row.exception_type == "workers.core.exceptions.TransientError"


@pytest.mark.django_db
def test_a_row_links_to_its_task_in_flower_and_its_events_in_sentry(admin_client, settings):
    row = DeadLetterFactory(task_id="4d9c-task")
    url = reverse("admin:workers_deadletter_change", args=[row.pk])
    settings.FLOWER_PUBLIC_URL, settings.SENTRY_ISSUES_URL = "", ""
    assert "/task/4d9c-task" not in admin_client.get(url).content.decode()
    settings.FLOWER_PUBLIC_URL = "https://flower.example.com/"
    settings.SENTRY_ISSUES_URL = "https://sentry.example.com/organizations/acme/issues/"
    page = admin_client.get(url).content.decode()
    assert 'href="https://flower.example.com/task/4d9c-task"' in page
    assert ('href="https://sentry.example.com/organizations/acme/issues/?query='
            'celery_task_id%3A4d9c-task"') in page


@pytest.mark.django_db
def test_retention_purges_closed_rows_by_age_and_cap_and_never_an_open_one(settings):
    settings.DEAD_LETTER_KEEP_RESOLVED_DAYS, settings.DEAD_LETTER_KEEP_DISCARDED_DAYS = 30, 90
    settings.DEAD_LETTER_KEEP_OPEN_DAYS, settings.DEAD_LETTER_PURGE_BATCH = 0, 2
    now = timezone.now()
    old = now - timedelta(days=60)
    expired = DeadLetterFactory.create_batch(3, status="resolved", failed_at=old)
    kept = [DeadLetterFactory(status="discarded", failed_at=old),
            DeadLetterFactory(status="new", failed_at=now - timedelta(days=900))]
    assert dead_letters_apply_retention(now=now) == 3
    assert set(DeadLetter.objects.values_list("pk", flat=True)) == {row.pk for row in kept}
    assert not DeadLetter.objects.filter(pk__in=[row.pk for row in expired]).exists()

    settings.DEAD_LETTER_MAX_ROWS = 1  # over the cap: the closed row goes, the open one stays
    assert dead_letters_apply_retention(now=now) == 1
    assert list(DeadLetter.objects.values_list("status", flat=True)) == ["new"]
    assert dead_letters_apply_retention(now=now) == 0
    assert DeadLetterEvent.objects.filter(action="purged").count() == 2


@pytest.mark.django_db
def test_export_of_a_filter_as_csv_and_json_redacts_payloads(admin_client, capsys):
    DeadLetterFactory(task_name="app.tasks.charge", kwargs={"card_number": "4242424242424242"})
    DeadLetterFactory(task_name="app.tasks.other")
    response = admin_client.post(reverse(CHANGELIST) + "?task_name=app.tasks.charge", {
        "action": "export_csv", "select_across": "1",
        "_selected_action": [DeadLetter.objects.first().pk]})
    body = response.content.decode()
    assert response["Content-Disposition"] == 'attachment; filename="dead-letters.csv"'
    assert body.splitlines()[0].startswith("id,task_id,task_name")
    assert len(body.strip().splitlines()) == 2
    assert "4242424242424242" not in body
    assert "[redacted]" in body

    call_command("dlq", "export", "--format", "json", "--task", "app.tasks.charge")
    exported = json.loads(capsys.readouterr().out)
    assert [row["task_name"] for row in exported] == ["app.tasks.charge"]
    assert exported[0]["kwargs"] == {"card_number": "[redacted]"}
    assert DeadLetterEvent.objects.filter(action="exported").count() == 2


@pytest.mark.django_db
def test_a_note_on_a_whole_cause_shows_on_the_causes_page(admin_client):
    row = DeadLetterFactory()
    url = reverse("admin:workers_deadletter_groups")
    admin_client.post(url, {"action": "note", "fingerprint": row.fingerprint,
                            "note": "billing owns this; fix in PR 881"})
    assert "Note: billing owns this; fix in PR 881" in admin_client.get(url).content.decode()
    event = DeadLetterEvent.objects.get()
    assert (event.action, event.fingerprint, event.dead_letter) == ("note", row.fingerprint,
                                                                    None)


@pytest.mark.django_db
def test_a_csv_export_neutralises_formula_cells(capsys):
    DeadLetterFactory(task_name='=HYPERLINK("https://evil.example","open")',
                      message="+cmd|' /C calc'!A0")
    call_command("dlq", "export", "--format", "csv", "--status", "new")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["task_name"].startswith("'=HYPERLINK")
    assert rows[0]["message"].startswith("'+cmd")
