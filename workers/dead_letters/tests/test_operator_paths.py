"""What an operator hit walking the triage for real: select-all replaying rows that must
never be replayed, a resume that paused again at once, a redrive sending far ahead of the
workers, causes that cannot succeed by replay, and the CLI leaving no audit trail."""

import re

import pytest
from celery.utils import uuid
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.factories import DeadLetterFactory
from tests.fixtures import wait_for
from workers.core.routing import BULK, CRITICAL
from workers.dead_letters.models import DeadLetter, DeadLetterEvent, Redrive
from workers.dead_letters.redrive import (
    MIN_AHEAD,
    redrive_cancel,
    redrive_draft,
    redrive_pause,
    redrive_progress,
    redrive_resume,
    redrive_start,
)
from workers.dead_letters.selectors import dead_letter_groups

CHANGELIST = "admin:workers_deadletter_changelist"
Status = DeadLetter.Status


def mixed_rows() -> dict[str, list[DeadLetter]]:
    """Rows of one cause in every state, plus one whose task this codebase lacks."""
    def make(status: str, count: int, **fields: object) -> list[DeadLetter]:
        return [DeadLetterFactory(status=status, queue=BULK, **fields) for _ in range(count)]
    return {"new": make(Status.NEW, 4), "acknowledged": make(Status.ACKNOWLEDGED, 1),
            "discarded": make(Status.DISCARDED, 3), "resolved": make(Status.RESOLVED, 2),
            "requeued": make(Status.REQUEUED, 1),
            "unknown": make(Status.NEW, 1, task_name="apps.gone.tasks.removed")}


def ids(rows: list[DeadLetter]) -> list[int]:
    return [row.pk for row in rows]


@pytest.mark.django_db
def test_select_all_requeue_touches_only_open_replayable_rows(admin_client):
    rows = mixed_rows()
    first = rows["new"][0].pk
    page = admin_client.post(reverse(CHANGELIST), {
        "action": "requeue", "select_across": "1", "_selected_action": first,
        "index": "0"}).content.decode()
    assert re.search(r'id="confirm-count">5<', page)  # 4 new + 1 acknowledged
    assert re.search(r'id="confirm-selected">12<', page)
    assert "<strong>3</strong> discarded: kept for the record, never replayed" in page
    assert "<strong>2</strong> resolved" in page
    assert "task apps.gone.tasks.removed is not defined in this codebase" in page
    frozen = re.search(r'name="frozen_ids" value="([\d,]*)"', page)[1]
    assert sorted(map(int, frozen.split(","))) == sorted(ids(rows["new"] + rows["acknowledged"]))

    # Even a hand-made post naming discarded and resolved rows replays none of them.
    every_id = ",".join(str(row.pk) for group in rows.values() for row in group)
    result = admin_client.post(reverse(CHANGELIST), {
        "action": "requeue", "select_across": "1", "_selected_action": first,
        "frozen_ids": every_id, "confirmed": "yes"}).content.decode()
    assert re.search(r'id="result-done">5<', result)
    for never in ("discarded", "resolved", "requeued", "unknown"):
        for row in rows[never]:
            row.refresh_from_db()
            assert (row.requeue_count, row.replay_task_id) == (0, ""), (never, row.status)
    assert DeadLetter.objects.filter(status=Status.DISCARDED).count() == 3
    event = DeadLetterEvent.objects.get(action=DeadLetterEvent.Action.REQUEUED)
    assert (event.actor, event.count, event.detail["refused"]) == ("admin", 5, 7)


@pytest.mark.django_db
def test_a_row_whose_queue_a_deploy_removed_is_refused_by_name_and_the_rest_go():
    """Its replay could never be published (the outbox refuses an undeclared queue): the
    row says why, and the other rows of the same requeue are replayed."""
    from workers.dead_letters.services import dead_letters_requeue

    gone, kept = DeadLetterFactory(queue="removed-queue"), DeadLetterFactory(queue=BULK)
    outcome = dead_letters_requeue(dead_letter_ids=[gone.pk, kept.pk], actor="ops")

    assert list(outcome.requeued) == [kept.pk]
    assert "queue removed-queue is not declared" in outcome.refused[gone.pk]
    gone.refresh_from_db()
    assert (gone.status, gone.replay_task_id) == (Status.NEW, "")


@pytest.mark.django_db
def test_a_requeue_costs_the_same_queries_for_few_rows_as_for_many():
    """A requeue reads only what its rules and the replay need (not tracebacks), and a
    field it reads that the query left out would cost a query per row: the count must
    not grow with the rows."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from workers.dead_letters.services import dead_letters_send_replays

    def queries_to_requeue(count: int) -> list[str]:
        rows = [DeadLetterFactory(queue=BULK, traceback="Traceback ...\n" * 200)
                for _ in range(count)]
        with CaptureQueriesContext(connection) as queries:
            outcome = dead_letters_send_replays(dead_letter_ids=ids(rows), actor="ops")
        assert sorted(outcome.requeued) == ids(rows)
        return [query["sql"] for query in queries.captured_queries]

    few, many = queries_to_requeue(2), queries_to_requeue(40)
    assert len(few) == len(many)
    assert not any('"traceback"' in sql for sql in many if sql.startswith("SELECT"))


@pytest.mark.django_db
def test_select_all_redrive_drafts_only_rows_it_may_replay(admin_client):
    rows = mixed_rows()
    admin_client.post(reverse(CHANGELIST), {
        "action": "redrive", "select_across": "1", "_selected_action": rows["new"][0].pk,
        "index": "0"})
    redrive = Redrive.objects.get()
    assert sorted(redrive.dead_letter_ids) == sorted(ids(rows["new"] + rows["acknowledged"]))
    assert "7 left out" in redrive.description


@pytest.mark.django_db
def test_the_cli_writes_the_audit_trail():
    rows = mixed_rows()
    call_command("dlq", "requeue", str(rows["new"][0].pk))
    call_command("dlq", "discard", str(rows["new"][1].pk))
    call_command("dlq", "purge", str(rows["resolved"][0].pk))
    events = {event.action: event for event in DeadLetterEvent.objects.all()}
    for action in ("requeued", "discarded", "purged"):
        assert events[action].actor.startswith("cli:"), action
        assert events[action].count == 1, action
    assert events["discarded"].detail["ids"] == [rows["new"][1].pk]


@pytest.mark.django_db
def test_redrive_controls_are_distinct_audit_actions_with_the_redrive():
    rows = [DeadLetterFactory() for _ in range(3)]
    redrive = redrive_draft(dead_letter_ids=ids(rows), actor="ops", description="test")
    redrive_start(redrive_id=redrive.pk, actor="ops", rate=1, canary=1, max_failure_rate=0.5)
    redrive_pause(redrive_id=redrive.pk, actor="ops")
    redrive_resume(redrive_id=redrive.pk, actor="ops", canary=0)
    redrive_cancel(redrive_id=redrive.pk, actor="ops")
    trail = list(DeadLetterEvent.objects.order_by("at", "pk").values_list("action", "redrive"))
    assert trail == [("redrive", redrive.pk), ("redrive_paused", redrive.pk),
                     ("redrive_resumed", redrive.pk), ("redrive_cancelled", redrive.pk)]


@pytest.mark.django_db
def test_causes_show_triage_state_sort_by_count_and_say_what_cannot_replay(admin_client):
    small = [DeadLetterFactory(message="small cause", status=status)
             for status in (Status.NEW, Status.ACKNOWLEDGED, Status.SNOOZED)]
    big = [DeadLetterFactory(message="big cause") for _ in range(5)]
    gone = DeadLetterFactory(task_name="apps.gone.tasks.removed", message="gone")
    by_count = dead_letter_groups(order="count")
    assert [group.fingerprint for group in by_count][:2] == [big[0].fingerprint,
                                                            small[0].fingerprint]
    small_group = by_count[1]
    assert (small_group.new, small_group.acknowledged, small_group.snoozed) == (1, 1, 1)

    page = admin_client.get(reverse("admin:workers_deadletter_groups") + "?o=count")
    html = page.content.decode()
    row = re.search(rf'<tr class="group" data-fingerprint="{gone.fingerprint}">.*?</tr>', html,
                    re.S)[0]
    assert "Cannot succeed by replay: task apps.gone.tasks.removed is not defined" in row
    assert "Redrive" not in row
    assert 'class="discard"' in row
    big_row = re.search(rf'data-fingerprint="{big[0].fingerprint}">.*?</tr>', html, re.S)[0]
    assert f"fingerprint={big[0].fingerprint}&amp;status__exact=new" in big_row
    assert "Redrive" in big_row


def test_resume_after_a_failed_canary_starts_a_new_window_and_finishes(live_workers,
                                                                      test_redis):
    key = uuid()
    rows = [DeadLetterFactory(task_name="tests.tasks.fails_until_fixed", args=[key],
                              queue=CRITICAL, message="not fixed yet") for _ in range(20)]
    redrive = redrive_draft(dead_letter_ids=ids(rows), actor="ops", description="test")
    redrive_start(redrive_id=redrive.pk, actor="ops", rate=20, canary=4,
                  max_failure_rate=0.2)
    paused = wait_for(lambda: Redrive.objects.filter(pk=redrive.pk,
                                                     status=Redrive.Status.PAUSED).first(),
                      what="the canary to pause the redrive")
    assert "canary: 4 of 4" in paused.status_reason
    assert DeadLetterEvent.objects.get(action="redrive_paused").actor == "redrive"

    test_redis.set(f"test:fixed:{key}", 1)  # the cause is fixed
    redrive_resume(redrive_id=redrive.pk, actor="ops")
    done = wait_for(lambda: Redrive.objects.filter(
        pk=redrive.pk, status__in=[Redrive.Status.DONE, Redrive.Status.PAUSED]).first(),
        what="the resumed redrive to stop")
    assert done.status == Redrive.Status.DONE, done.status_reason
    figures = redrive_progress(done)
    # 20 rows, and the 4 that failed in the canary sent again (their boomerangs).
    assert (figures.total, figures.sent, figures.succeeded, figures.failed,
            figures.in_flight, figures.percent) == (24, 24, 20, 4, 0, 100)
    assert not DeadLetter.objects.filter(status__in=[Status.NEW, Status.ACKNOWLEDGED,
                                                     Status.SNOOZED]).exists()
    # The canary's four rows are closed by the replays that failed again, not left
    # "requeued" for good (where nothing could triage, replay or purge them).
    assert DeadLetter.objects.filter(status=Status.SUPERSEDED).count() == 4
    assert not DeadLetter.objects.filter(status=Status.REQUEUED).exists()


def test_a_redrive_never_runs_far_ahead_of_the_workers(live_workers, test_redis):
    key = uuid()
    rows = [DeadLetterFactory(task_name="tests.tasks.held_until_released", args=[key],
                              queue=BULK) for _ in range(MIN_AHEAD + 40)]
    redrive = redrive_draft(dead_letter_ids=ids(rows), actor="ops", description="test")
    # Far above what the pool drains: the bound is the workers' pace, not the rate.
    redrive_start(redrive_id=redrive.pk, actor="ops", rate=2000, canary=0,
                  max_failure_rate=0.5)
    try:
        waiting = wait_for(lambda: Redrive.objects.filter(
            pk=redrive.pk, status_reason__startswith="waiting for the workers").first(),
            what="the redrive to wait for the workers")
    finally:  # whatever happened, the bulk pool is not held for the next tests
        test_redis.set(f"test:release:{key}", 1)
    # The bulk pool held its replays (none finished): it stopped at the least bound.
    assert waiting.sent == MIN_AHEAD
    done = wait_for(lambda: Redrive.objects.filter(pk=redrive.pk,
                                                   status=Redrive.Status.DONE).first(),
                    what="the redrive to finish once the workers catch up")
    assert (done.sent, done.succeeded) == (len(rows), len(rows))


@pytest.mark.django_db
def test_the_cli_says_why_a_named_row_is_not_requeued():
    row = DeadLetterFactory(status=Status.DISCARDED)
    with pytest.raises(CommandError, match="discarded: kept for the record, never replayed"):
        call_command("dlq", "requeue", str(row.pk))
    row.refresh_from_db()
    assert row.requeue_count == 0


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["requeue", "discard"])
def test_the_cli_says_when_nothing_matches_instead_of_exiting_silently(action, capsys):
    DeadLetterFactory(task_name="tests.tasks.permanent")
    call_command("dlq", action, "--task", "tests.tasks.no_such_task")
    assert "no dead letter matches ({'task': 'tests.tasks.no_such_task'})" in (
        capsys.readouterr().out)
    assert not DeadLetterEvent.objects.exists()  # no audit event for nothing done


@pytest.mark.django_db
def test_deleting_from_the_admin_is_an_audited_purge(admin_client):
    rows = [DeadLetterFactory() for _ in range(3)]
    admin_client.post(reverse(CHANGELIST), {
        "action": "delete_selected", "_selected_action": [rows[0].pk, rows[1].pk],
        "post": "yes"})
    admin_client.post(reverse("admin:workers_deadletter_delete", args=[rows[2].pk]),
                      {"post": "yes"})
    assert not DeadLetter.objects.exists()
    purges = DeadLetterEvent.objects.filter(action="purged").order_by("at", "pk")
    assert [(event.actor, event.count) for event in purges] == [("admin", 2), ("admin", 1)]


@pytest.mark.django_db
def test_a_blank_canary_on_resume_means_the_redrives_own(admin_client):
    rows = [DeadLetterFactory() for _ in range(3)]
    redrive = redrive_draft(dead_letter_ids=ids(rows), actor="ops", description="test")
    redrive_start(redrive_id=redrive.pk, actor="ops", rate=1, canary=2, max_failure_rate=0.5)
    redrive_pause(redrive_id=redrive.pk, actor="ops")
    admin_client.post(reverse("admin:workers_redrive_change", args=[redrive.pk]),
                      {"control": "resume", "canary": " ", "retry_failed": "on"})
    redrive.refresh_from_db()
    assert (redrive.status, redrive.window_canary) == (Redrive.Status.CANARY, 2)
