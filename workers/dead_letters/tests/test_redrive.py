"""Redrives with real workers: from the groups page in three clicks, the canary, the rate,
and the automatic pause when replays keep failing."""

import re

import pytest
from celery.utils import uuid
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.factories import DeadLetterFactory
from tests.fixtures import wait_for
from workers.core.routing import BULK, CRITICAL
from workers.dead_letters.models import DeadLetter, DeadLetterEvent, Redrive
from workers.dead_letters.redrive import redrive_draft, redrive_start


def rows(count: int, *, task: str, message: str) -> list[DeadLetter]:
    return [DeadLetterFactory(task_name=task, queue=CRITICAL, args=[uuid()], message=message)
            for _ in range(count)]


def settled(redrive: Redrive, *statuses: str) -> Redrive:
    return wait_for(lambda: Redrive.objects.filter(pk=redrive.pk, status__in=statuses).first(),
                    what=f"redrive {redrive.pk} to become {' or '.join(statuses)}")


def test_a_group_is_redriven_from_the_admin_in_three_clicks(live_workers, admin_client):
    fixed = rows(25, task="tests.tasks.log_line", message="broken until the fix")
    noise = rows(3, task="tests.tasks.undeclared", message="another cause")

    # 1. The groups page (linked from the dead-letter list).
    page = admin_client.get(reverse("admin:workers_deadletter_groups")).content.decode()
    assert "broken until the fix" in page
    assert re.search(rf'data-fingerprint="{fixed[0].fingerprint}".*?class="count-new">'
                     r'<a [^>]*>25</a>', page, re.S)
    # 2. Redrive… on the group: a draft with exactly the group's rows, frozen.
    response = admin_client.post(reverse("admin:workers_deadletter_groups"), {
        "action": "redrive", "fingerprint": fixed[0].fingerprint, "title": "log_line"})
    redrive = Redrive.objects.get()
    assert response.url == reverse("admin:workers_redrive_change", args=[redrive.pk])
    assert sorted(redrive.dead_letter_ids) == sorted(row.pk for row in fixed)
    assert "25 dead letter(s) selected" in admin_client.get(response.url).content.decode()
    # 3. Start, with a canary of 5 at 20 replays a second.
    admin_client.post(response.url, {"control": "start", "rate": "20", "canary": "5",
                                     "max_failure_rate": "20", "queue": ""})

    redrive = settled(redrive, Redrive.Status.DONE)
    assert (redrive.sent, redrive.succeeded, redrive.failed) == (25, 25, 0)
    assert not DeadLetter.objects.filter(pk__in=[r.pk for r in fixed]).exclude(
        status=DeadLetter.Status.RESOLVED).exists()
    assert all(row.status == DeadLetter.Status.NEW
               for row in DeadLetter.objects.filter(pk__in=[r.pk for r in noise]))
    started = DeadLetterEvent.objects.get(action=DeadLetterEvent.Action.REDRIVE)
    assert (started.actor, started.count, started.detail["canary"]) == ("admin", 25, 5)
    progress = admin_client.get(reverse("admin:workers_redrive_change", args=[redrive.pk]))
    assert "100% of 25" in progress.content.decode()


def test_a_failing_canary_pauses_the_redrive_before_the_rest_is_sent(live_workers):
    broken = rows(12, task="tests.tasks.undeclared", message="still broken")
    redrive = redrive_draft(dead_letter_ids=[row.pk for row in broken], actor="ops",
                            description="test")
    redrive_start(redrive_id=redrive.pk, actor="ops", rate=50, canary=3,
                  max_failure_rate=0.5)

    redrive = settled(redrive, Redrive.Status.PAUSED)
    assert redrive.status_reason.startswith("canary: 3 of 3 replays failed again")
    assert (redrive.position, redrive.sent) == (3, 3)
    # The canary's replays came back as new dead letters linked to their originals.
    boomerangs = DeadLetter.objects.filter(replay_of__in=[row.pk for row in broken])
    assert boomerangs.count() == 3
    assert DeadLetter.objects.filter(pk__in=[row.pk for row in broken],
                                     status=DeadLetter.Status.NEW).count() == 9


def test_a_redrive_pauses_by_itself_when_replays_keep_failing(live_workers):
    good = rows(5, task="tests.tasks.log_line", message="flaky")
    bad = rows(35, task="tests.tasks.undeclared", message="flaky")
    redrive = redrive_draft(dead_letter_ids=[row.pk for row in [*good, *bad]], actor="ops",
                            description="test")
    redrive_start(redrive_id=redrive.pk, actor="ops", rate=5, canary=5, max_failure_rate=0.2,
                  queue=BULK)

    redrive = settled(redrive, Redrive.Status.PAUSED)
    assert "paused by itself" in redrive.status_reason
    assert redrive.position < 40
    assert DeadLetter.objects.filter(pk__in=[row.pk for row in bad],
                                     status=DeadLetter.Status.NEW).exists()


@pytest.mark.django_db
def test_bad_redrive_settings_are_refused_and_leave_the_draft():
    row = DeadLetterFactory()
    redrive = redrive_draft(dead_letter_ids=[row.pk], actor="ops", description="test")
    for settings, message in (({"rate": 0}, "rate is between"),
                              ({"max_failure_rate": 2}, "above 0 and at most 1"),
                              ({"queue": "nope"}, "unknown queue")):
        options = {"rate": 10, "canary": 1, "max_failure_rate": 0.2, **settings}
        with pytest.raises(ValueError, match=message):
            redrive_start(redrive_id=redrive.pk, actor="ops", **options)
    redrive.refresh_from_db()
    assert redrive.status == Redrive.Status.DRAFT
    with pytest.raises(ValueError, match="nothing selected"):
        redrive_draft(dead_letter_ids=[], actor="ops", description="empty")


def test_the_cli_lists_causes_and_redrives_one_until_done(live_workers, capsys):
    fixed = rows(6, task="tests.tasks.log_line", message="fixed by deploy 42")
    rows(2, task="tests.tasks.undeclared", message="other")
    call_command("dlq", "groups")
    listing = capsys.readouterr().out
    assert fixed[0].fingerprint in listing
    assert "fixed by deploy <n>" not in listing  # the example is a real message
    assert "fixed by deploy 42" in listing

    call_command("dlq", "redrive", "--fingerprint", fixed[0].fingerprint, "--rate", "20",
                 "--canary", "2", "--wait")
    out = capsys.readouterr().out
    assert "6 dead letter(s), canary 2" in out
    assert out.strip().splitlines()[-1].startswith("redrive ")
    assert "done: 100% of 6 finished, 6 sent, 6 succeeded, 0 failed again" in out


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (["redrive", "--rate", "0"], "rate is between"),
    (["redrive", "--fingerprint", "nothing-here"], "nothing selected can be redriven"),
    (["redrive-pause", "999999"], "no redrive with id 999999"),
    (["note", "text"], "belongs to a dead letter or a fingerprint"),
    (["show", "999999"], "no dead letter with id 999999"),
    (["snooze", "--for", "soon"], "take a number and a unit"),
])
def test_bad_cli_input_is_refused_with_a_reason(args, message):
    DeadLetterFactory()
    with pytest.raises(CommandError, match=message):
        call_command("dlq", *args)
    assert not Redrive.objects.exists()
