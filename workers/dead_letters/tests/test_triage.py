"""Requeue and discard from the admin and from `manage.py dlq`, with real workers."""

import pytest
from celery.utils import uuid
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests import tasks
from tests.fixtures import wait_for
from tests.waits import dead_letter, ran_on, runs
from workers.core.routing import BULK
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.services import REQUEUE_BATCH


def confirm(admin_client, action: str, ids: list[int], **extra: str):
    """Post the confirmation page of a bulk action, as its button does."""
    return admin_client.post(reverse("admin:workers_deadletter_changelist"), {
        "action": action, "_selected_action": [ids[0]], "select_across": "1",
        "confirmed": "yes", "frozen_ids": ",".join(map(str, ids)), **extra})


def failed_on_bulk(test_redis) -> tuple[DeadLetter, str]:
    key = uuid()
    result = tasks.fails_until_fixed.apply_async(args=[key], queue=BULK)
    row = dead_letter(result.id)
    test_redis.set(f"test:fixed:{key}", 1)
    return row, key


def assert_replayed_and_resolved(row: DeadLetter, key: str, test_redis, actor: str) -> None:
    row.refresh_from_db()
    assert row.requeue_count == 1
    assert row.requeued_by == actor
    assert row.requeued_at is not None
    assert ran_on(test_redis, row.replay_task_id) == ("bulk@test", BULK)
    wait_for(lambda: DeadLetter.objects.get(pk=row.pk).status == DeadLetter.Status.RESOLVED,
             what="the replay to resolve the dead letter")
    assert runs(test_redis, key) == 2


def test_admin_requeue_replays_the_stored_call_on_its_original_queue(live_workers, test_redis,
                                                                     admin_client):
    row, key = failed_on_bulk(test_redis)

    confirmation = admin_client.post(reverse("admin:workers_deadletter_changelist"),
                                     {"action": "requeue", "_selected_action": [row.pk]})
    assert "Requeue 1 dead letter(s)?" in confirmation.content.decode()
    response = confirm(admin_client, "requeue", [row.pk])

    assert "1 of 1 dead letter(s) requeued" in response.content.decode()
    assert_replayed_and_resolved(row, key, test_redis, actor="admin")


def test_cli_requeue_replays_the_stored_call_on_its_original_queue(live_workers, test_redis):
    row, key = failed_on_bulk(test_redis)

    call_command("dlq", "requeue", str(row.pk))

    row.refresh_from_db()
    assert row.requeued_by.startswith("cli:")
    assert_replayed_and_resolved(row, key, test_redis, actor=row.requeued_by)


def test_a_replay_that_fails_again_gets_its_own_row_linked_to_the_original(live_workers,
                                                                           test_redis):
    result = tasks.permanent.apply_async(args=[uuid()], queue=BULK)
    original = dead_letter(result.id)

    call_command("dlq", "requeue", str(original.pk))

    original.refresh_from_db()
    replay = dead_letter(original.replay_task_id)
    assert replay.replay_of_id == original.pk
    original.refresh_from_db()
    # Requeued until the replay failed, then superseded: the replay's row says why.
    assert original.status == DeadLetter.Status.SUPERSEDED


def test_requeue_of_many_rows_replays_every_replayable_one_and_names_the_rest(live_workers,
                                                                            test_redis):
    key = uuid()
    test_redis.set(f"test:fixed:{key}", 1)
    count = 2 * REQUEUE_BATCH + 7  # three transactions
    DeadLetter.objects.bulk_create(
        DeadLetter(task_id=uuid(), task_name=tasks.fails_until_fixed.name, queue=BULK,
                   args=[key], exception_type="x.Error") for _ in range(count))
    poison = DeadLetter.objects.create(task_id=uuid(), queue=BULK, raw_body="not a task message",
                                       exception_type="x.Error")

    with pytest.raises(CommandError, match=f"dead letter {poison.pk}: a message with no"):
        call_command("dlq", "requeue", "--queue", BULK)

    wait_for(lambda: runs(test_redis, key) == count, what="every replay to run")
    wait_for(lambda: DeadLetter.objects.filter(status=DeadLetter.Status.RESOLVED).count()
             == count, what="every replay to resolve its dead letter")
    replays = DeadLetter.objects.exclude(pk=poison.pk).values_list("replay_task_id", flat=True)
    assert len(set(replays)) == count
    poison.refresh_from_db()
    assert poison.status == DeadLetter.Status.NEW
    assert poison.requeue_count == 0


@pytest.mark.django_db
def test_requeue_twice_is_refused_and_exits_non_zero(test_redis):
    row = DeadLetter.objects.create(task_id=uuid(), task_name="tests.tasks.permanent",
                                    queue=BULK, args=["k"], exception_type="x.Error")
    call_command("dlq", "requeue", str(row.pk))
    with pytest.raises(CommandError, match="requeued: its replay is already on its way"):
        call_command("dlq", "requeue", str(row.pk), "--status", "requeued")
    test_redis.delete(BULK)  # the replay was never meant to run


@pytest.mark.django_db
def test_admin_detail_redacts_sensitive_payload_keys(admin_client):
    row = DeadLetter.objects.create(
        task_id=uuid(), task_name="tests.tasks.permanent", queue=BULK,
        args=["k"], kwargs={"card_number": "4242424242424242", "note": "visible"},
        exception_type="workers.core.exceptions.PermanentError", message="invalid input",
        traceback="Traceback (most recent call last): ...")

    page = admin_client.get(reverse("admin:workers_deadletter_change", args=[row.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert "4242424242424242" not in html
    assert "[redacted]" in html
    assert "visible" in html
    assert "Traceback" in html


@pytest.mark.django_db
def test_admin_list_filters_and_search(admin_client):
    DeadLetter.objects.create(task_id="needle-id", task_name="tests.tasks.permanent",
                              queue=BULK, exception_type="workers.core.exceptions.PermanentError",
                              message="invalid input")
    url = reverse("admin:workers_deadletter_changelist")
    assert "needle-id" in admin_client.get(url, {"q": "needle-id"}).content.decode()
    for query in ({"status__exact": "new"}, {"queue": BULK},
                  {"exception_type": "workers.core.exceptions.PermanentError"}):
        assert admin_client.get(url, query).status_code == 200


@pytest.mark.django_db
def test_admin_discard_and_cli_list_and_purge(admin_client, capsys):
    row = DeadLetter.objects.create(task_id=uuid(), task_name="tests.tasks.permanent",
                                    queue=BULK, kwargs={"password": "hunter2"},
                                    exception_type="workers.core.exceptions.PermanentError")
    confirm(admin_client, "discard", [row.pk])
    row.refresh_from_db()
    assert (row.status, row.closed_by) == (DeadLetter.Status.DISCARDED, "admin")

    call_command("dlq", "list", "--status", "discarded", "--queue", BULK)
    listing = capsys.readouterr().out
    assert "tests.tasks.permanent" in listing
    assert "hunter2" not in listing

    call_command("dlq", "purge", "--older-than", "0s")
    assert not DeadLetter.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (["list", "--older-than", "yesterday"], "take a number and a unit"),
    (["requeue", "999999"], "no matching dead letter with id [999999]"),
    (["discard", "999999"], "no matching dead letter with id [999999]"),
])
def test_bad_cli_input_is_a_clear_error_and_changes_nothing(args, message):
    with pytest.raises(CommandError) as error:
        call_command("dlq", *args)
    assert message in str(error.value)


@pytest.mark.django_db
def test_the_detail_page_offers_the_actions_its_status_allows(admin_client):
    row = DeadLetter.objects.create(task_id=uuid(), task_name="tests.tasks.permanent",
                                    queue=BULK, args=["k"],
                                    exception_type="workers.core.exceptions.PermanentError")
    url = reverse("admin:workers_deadletter_change", args=[row.pk])

    page = admin_client.get(url).content.decode()
    assert 'value="requeue"' in page
    assert 'value="discard"' in page
    assert 'name="_save"' not in page

    DeadLetter.objects.filter(pk=row.pk).update(status=DeadLetter.Status.RESOLVED)
    page = admin_client.get(url).content.decode()
    assert 'value="requeue"' not in page
    assert 'value="discard"' not in page
