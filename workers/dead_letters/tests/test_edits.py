"""Edit and requeue: checked against the task before anything changes, both payloads kept,
the diff in the audit trail, secrets left redacted keep their value."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.factories import DeadLetterFactory
from tests.fixtures import wait_for
from workers.dead_letters.edits import EditRefused, dead_letter_edit_requeue
from workers.dead_letters.models import DeadLetter, DeadLetterEvent


def test_an_edited_call_is_replayed_and_both_payloads_are_kept(live_workers, admin_client):
    row = DeadLetterFactory(task_name="tests.tasks.log_line", args=[], kwargs={"keyy": "k1"},
                            message="log_line() got an unexpected keyword argument 'keyy'")
    url = reverse("admin:workers_deadletter_edit", args=[row.pk])
    assert 'id="edit-requeue"' in admin_client.get(
        reverse("admin:workers_deadletter_change", args=[row.pk])).content.decode()
    assert "&quot;keyy&quot;" in admin_client.get(url).content.decode()

    refused = admin_client.post(url, {"payload": json.dumps({"kwargs": {"nope": 1}}),
                                      "reason": "typo"})
    assert "does not accept these arguments" in refused.content.decode()
    response = admin_client.post(url, {"payload": json.dumps({"args": [], "kwargs": {
        "key": "k1"}}), "reason": "the producer sent a typo; fixed in deploy 42"})
    assert response.status_code == 302

    wait_for(lambda: DeadLetter.objects.get(pk=row.pk).status == DeadLetter.Status.RESOLVED,
             what="the edited replay to succeed")
    row.refresh_from_db()
    assert (row.original_kwargs, row.kwargs) == ({"keyy": "k1"}, {"key": "k1"})
    viewed = DeadLetterEvent.objects.get(action=DeadLetterEvent.Action.VIEWED_PAYLOAD)
    assert (viewed.actor, viewed.text) == ("admin", "to edit it")  # the editor showed it
    event = DeadLetterEvent.objects.get(action=DeadLetterEvent.Action.EDITED)
    assert (event.actor, event.text) == ("admin", "the producer sent a typo; fixed in deploy 42")
    assert '-    "keyy": "k1"' in event.detail["diff"]
    assert '+    "key": "k1"' in event.detail["diff"]


@pytest.mark.django_db
@pytest.mark.parametrize(("payload", "reason", "message"), [
    ("{not json", "why", "not valid JSON"),
    ('{"args": {}}', "why", '"args" must be a list'),
    ('{"argz": []}', "why", 'expected an object with "args"'),
    ('{"args": ["a", "b", "c"]}', "why", "does not accept these arguments"),
    ('{"args": ["a"]}', " ", "say why"),
])
def test_a_bad_edit_is_refused_and_changes_nothing(payload, reason, message):
    row = DeadLetterFactory(task_name="tests.tasks.permanent", args=["k"])
    with pytest.raises(EditRefused, match=message):
        dead_letter_edit_requeue(dead_letter_id=row.pk, payload=payload, reason=reason,
                                 actor="ops")
    row.refresh_from_db()
    assert (row.args, row.original_args, row.status) == (["k"], None, "new")
    assert not DeadLetterEvent.objects.exists()


@pytest.mark.django_db
def test_secrets_left_redacted_keep_their_value_and_never_reach_the_trail(capsys):
    row = DeadLetterFactory(task_name="tests.tasks.permanent", args=["k"],
                            kwargs={"card_number": "4242424242424242"})
    call_command("dlq", "edit", str(row.pk),
                 '{"args": ["k2"], "kwargs": {"card_number": "[redacted]"}}',
                 "--reason", "wrong key")
    row.refresh_from_db()
    assert row.args == ["k2"]
    assert row.kwargs == {"card_number": "4242424242424242"}
    assert "4242424242424242" not in json.dumps(DeadLetterEvent.objects.get().detail)
    call_command("dlq", "show", str(row.pk))
    shown = capsys.readouterr().out
    assert "Edited and requeued wrong key" in shown
    assert "4242424242424242" not in shown
    assert "[redacted]" in shown
    with pytest.raises(CommandError, match="is requeued"):
        call_command("dlq", "edit", str(row.pk), '{"args": ["k3"]}', "--reason", "again")


@pytest.mark.django_db
@pytest.mark.parametrize("payload", [
    '{"args": [NaN], "kwargs": {}}', '{"args": [Infinity], "kwargs": {}}',
    '{"args": [1e400], "kwargs": {}}', '{"args": ["\\ud800"], "kwargs": {}}',
    '{"args": ["a\\u0000b"], "kwargs": {}}', '{"args": ' + "[" * 3000 + "]" * 3000 + "}"])
def test_a_payload_a_row_cannot_store_is_refused_not_a_500(payload, admin_client):
    row = DeadLetterFactory(task_name="tests.tasks.permanent", args=["k"])
    page = admin_client.post(reverse("admin:workers_deadletter_edit", args=[row.pk]),
                             {"payload": payload, "reason": "hostile"})
    assert page.status_code == 200
    assert "not valid JSON for a stored call" in page.content.decode()
    with pytest.raises(CommandError, match="not valid JSON for a stored call"):
        call_command("dlq", "edit", str(row.pk), payload, "--reason", "hostile")
    row.refresh_from_db()
    assert (row.args, row.status) == (["k"], DeadLetter.Status.NEW)
