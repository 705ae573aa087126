"""One redaction for every eye: a row's secrets (a positional argument named `password`, a
secret keyword argument, a secret-looking value, the message, the traceback, an earlier
attempt's error, a raw body) show on no admin page, in no export and in no `dlq` output to
anyone without `view_payload`; those with it see them only in the recorded unredacted
section, and each of their searches (which reach into the stored arguments) is recorded;
an edit's audit diff says a hidden value changed without showing it."""

import json

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import tasks  # noqa: F401  # tests.tasks.login, whose signature names its arguments
from tests.factories import DeadLetterFactory, dead_letter_roles
from workers.core.models import OutboxMessage
from workers.core.platform_redis import redis_client
from workers.core.redaction import REDACTED_CHANGED
from workers.core.routing import BULK
from workers.dead_letters.edits import EditRefused, dead_letter_edit_requeue
from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.ops.alerts.services import FAILURE_KEY, alert_on_dead_letter
from workers.ops.alerts.windows import WINDOWS_KEY

CHANGELIST = "admin:workers_deadletter_changelist"
SECRETS = {
    "positional": "tb-positional-3f9a2c",  # login(username, password): the password
    "keyword": "tb-keyword-8e1d4b",  # session=
    "shaped": "sk_live_tbshaped51Kx0aZ9qP",  # a Stripe secret key, under a plain name
    "message": "tb-message-6c2f7e",  # in the message, and so in the traceback
    "bearer": "tb-bearer-a9c0d3e5f7",  # an Authorization header in the traceback
    "attempt": "tb-attempt-0b7e9d",  # an earlier attempt's error
    "raw": "tb-raw-4d6a1f",  # a poison message's body
}


def planted_row(*, poison: bool = False, task_name: str = "tests.tasks.login") -> DeadLetter:
    """A failed call of tests.tasks.login with a secret everywhere; `poison`: a message
    no task could be built from, stored with its raw body. The message also quotes the
    positional password bare, as a row stored by a process that did not know the task's
    signature (or stored before the worker hid such values) holds it."""
    message = (f"login failed for {{'username': 'alice', 'password': '{SECRETS['message']}'}}"
               f" using {SECRETS['positional']}")
    return DeadLetterFactory(
        task_name=task_name, queue=BULK,
        args=["alice", SECRETS["positional"]],
        kwargs={"session": SECRETS["keyword"], "hold": SECRETS["shaped"]},
        exception_type="workers.core.exceptions.PermanentError", message=message,
        traceback=("Traceback (most recent call last):\n"
                   '  File "/app/tests/tasks.py", line 160, in login\n'
                   "    raise PermanentError(f\"login failed for {password!r}\")\n"
                   f"  headers={{'Authorization': 'Bearer {SECRETS['bearer']}'}}\n"
                   f"workers.core.exceptions.PermanentError: {message}"),
        attempt_errors=[{"attempt": 1, "exception_type": "builtins.ValueError",
                         "message": f"password={SECRETS['attempt']} refused",
                         "at": "2026-11-24T10:00:00+00:00"}],
        raw_body=f'[["alice"], {{"api_key": "{SECRETS["raw"]}"}}, {{}}]' if poison else "")


def shown_secrets(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def member_of(client: Client, group: str) -> Client:
    dead_letter_roles()
    user = User.objects.create_user(group.split()[-1], password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return client


@pytest.fixture
def viewer(client) -> Client:
    return member_of(client, "Dead-letter viewers")


@pytest.fixture
def operator(client) -> Client:
    return member_of(client, "Dead-letter operators")


def pages(client: Client, row: DeadLetter) -> dict[str, str]:
    """Every page that shows something of the row (and of a poison message beside it), as
    this user gets it."""
    detail = reverse("admin:workers_deadletter_change", args=[row.pk])
    poison = planted_row(poison=True)
    found = {
        "detail of a poison message": client.get(
            reverse("admin:workers_deadletter_change", args=[poison.pk])),
        "list": client.get(reverse(CHANGELIST)),
        "list, searched": client.get(reverse(CHANGELIST), {"q": "login"}),
        "detail": client.get(detail),
        "detail, unredacted asked": client.get(detail, {"unredacted": "1"}),
        "groups": client.get(reverse("admin:workers_deadletter_groups")),
        "confirm": client.post(reverse(CHANGELIST), {"action": "discard",
                                                     "_selected_action": [row.pk]}),
        "edit": client.get(reverse("admin:workers_deadletter_edit", args=[row.pk])),
        "export csv": client.post(reverse(CHANGELIST), {"action": "export_csv",
                                                        "_selected_action": [row.pk]}),
        "export json": client.post(reverse(CHANGELIST), {"action": "export_json",
                                                         "_selected_action": [row.pk]}),
    }
    for name, response in found.items():
        assert response.status_code in (200, 302, 403), (name, response.status_code)
    return {name: response.content.decode() for name, response in found.items()}


@pytest.mark.django_db
def test_a_viewer_sees_no_secret_on_any_page_or_export(viewer):
    row = planted_row()

    shown = pages(viewer, row)

    assert {name: shown_secrets(html) for name, html in shown.items()} == {
        name: [] for name in shown}
    assert "alice" in shown["detail"]  # what is not secret still shows
    assert "[redacted]" in shown["detail"]
    assert "login failed for" in shown["list"]
    assert "login failed for" in shown["groups"]
    assert "PermanentError: login failed for" in shown["detail"]  # the traceback
    assert "&quot;username&quot;: &quot;alice&quot;" not in shown["detail"]  # no raw payload


@pytest.mark.django_db
def test_a_task_this_process_cannot_find_shows_none_of_its_positional_strings(viewer):
    """A row of a task renamed or removed since it failed: no signature names its
    arguments, so every string of them is hidden, in the payload and in the error text."""
    row = planted_row(task_name="tests.tasks.removed_since")

    shown = pages(viewer, row)

    assert {name: shown_secrets(html) for name, html in shown.items()} == {
        name: [] for name in shown}
    assert "login failed for" in shown["detail"]


@pytest.mark.django_db
def test_a_new_failure_alert_holds_no_secret_of_the_call():
    row = planted_row()
    # A window this fingerprint opened in an earlier run (minutes ago) would count the
    # failure instead of alerting.
    redis_client().zrem(WINDOWS_KEY, FAILURE_KEY + row.fingerprint)

    alert = alert_on_dead_letter(dead_letter_id=row.pk)

    assert "login failed for" in alert.text
    assert shown_secrets(alert.text + alert.title) == []


@pytest.mark.django_db
def test_an_operator_without_view_payload_sees_no_secret_on_any_page_or_export(operator):
    row = planted_row()

    shown = pages(operator, row)

    assert "Discard 1 dead letter(s)?" in shown["confirm"]
    assert "login failed for" in shown["confirm"]
    assert 'id="edit-form"' in shown["edit"]
    assert "&quot;alice&quot;" in shown["edit"]
    assert {name: shown_secrets(html) for name, html in shown.items()} == {
        name: [] for name in shown}
    exported = json.loads(shown["export json"])
    assert exported[0]["args"] == ["alice", "[redacted]"]
    assert exported[0]["kwargs"] == {"session": "[redacted]", "hold": "[redacted]"}


@pytest.mark.django_db
def test_view_payload_shows_the_row_unredacted_only_where_asked_and_recorded(admin_client):
    row = planted_row()
    detail = reverse("admin:workers_deadletter_change", args=[row.pk])

    assert shown_secrets(admin_client.get(detail).content.decode()) == []
    unredacted = admin_client.get(detail, {"unredacted": "1"}).content.decode()

    section = unredacted.split('id="unredacted"')[1]
    assert sorted(shown_secrets(section)) == sorted(set(SECRETS) - {"raw"})
    assert shown_secrets(unredacted.split('id="unredacted"')[0]) == []
    event = DeadLetterEvent.objects.get()
    assert (event.action, event.dead_letter) == ("viewed_payload", row)


@pytest.mark.django_db
def test_the_cli_shows_no_secret(capsys):
    row = planted_row()

    for command in (["list"], ["show", str(row.pk)], ["groups"],
                    ["export", "--format", "csv"], ["export", "--format", "json"]):
        call_command("dlq", *command)
        output = capsys.readouterr().out
        assert "login failed for" in output, command
        assert shown_secrets(output) == [], command


@pytest.mark.django_db
def test_a_search_by_someone_who_may_search_payloads_is_recorded(admin_client, operator):
    DeadLetterFactory(kwargs={"card_number": "4242424242424242"})
    url = reverse(CHANGELIST)

    admin_client.get(url)
    admin_client.get(url, {"q": "  "})
    assert not DeadLetterEvent.objects.exists()
    admin_client.get(url, {"q": "4242", "status__exact": "new"})
    operator.get(url, {"q": "4242"})  # cannot search the payloads: nothing to record

    event = DeadLetterEvent.objects.get()
    assert (event.action, event.actor, event.text) == (
        "searched_payload", "admin", "searched for '4242'")
    assert event.detail["filter"] == {"q": "4242", "status__exact": "new"}


ANY_INPUT = settings(max_examples=40, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])


@pytest.mark.django_db
@ANY_INPUT
@given(term=st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
@example(term="\x00")  # PostgreSQL refuses a NUL: the causes page answered 500
@example(term="password=hunter2 \x00")
def test_any_search_term_is_answered_and_recorded_only_for_payload_searchers(
        term, admin_client, operator):
    DeadLetterFactory(kwargs={"card_number": "4242424242424242"})
    # A NUL (which PostgreSQL refuses) is refused or dropped before any search is made.
    searched = bool(term.strip()) and "\x00" not in term
    # Recorded on each page (the list, and by cause) for those who may search payloads.
    for client, recorded in ((operator, 0), (admin_client, 2 * int(searched))):
        before = DeadLetterEvent.objects.count()
        for page in (CHANGELIST, "admin:workers_deadletter_groups"):
            status = client.get(reverse(page), {"q": term}).status_code
            assert status in ((200, 400) if "\x00" in term else (200,))
        assert DeadLetterEvent.objects.count() - before == recorded


@pytest.mark.django_db
def test_an_edits_diff_marks_a_hidden_value_changed_and_never_shows_it(test_redis):
    row = planted_row()
    try:
        dead_letter_edit_requeue(dead_letter_id=row.pk, reason="rotated the password", payload=(
            json.dumps({"args": ["bob", "tb-new-password-77"],
                        "kwargs": {"session": "[redacted]", "hold": "[redacted]"}})),
            actor="ops")
    finally:
        test_redis.delete(BULK)  # the replay was never meant to run

    row.refresh_from_db()
    assert row.args == ["bob", "tb-new-password-77"]
    assert row.kwargs == {"session": SECRETS["keyword"], "hold": SECRETS["shaped"]}
    diff = DeadLetterEvent.objects.get(action=DeadLetterEvent.Action.EDITED).detail["diff"]
    assert '-    "alice",' in diff
    assert '+    "bob",' in diff
    assert f'+    "{REDACTED_CHANGED}"' in diff
    assert '"session": "[redacted]"' not in [line[1:].strip() for line in diff.splitlines()
                                             if line[:1] in "+-"]
    assert shown_secrets(diff) == []
    assert "tb-new-password-77" not in diff


@pytest.mark.django_db
def test_a_positional_secret_left_redacted_keeps_its_value(operator, test_redis):
    row = planted_row()
    edit = reverse("admin:workers_deadletter_edit", args=[row.pk])
    shown = json.loads(operator.get(edit).context["payload"])
    assert shown["args"] == ["alice", "[redacted]"]

    shown["args"][0] = "bob"
    try:
        response = operator.post(edit, {"payload": json.dumps(shown), "reason": "typo"})
    finally:
        test_redis.delete(BULK)

    assert response.status_code == 302
    row.refresh_from_db()
    assert row.args == ["bob", SECRETS["positional"]]
    assert row.kwargs == {"session": SECRETS["keyword"], "hold": SECRETS["shaped"]}


@pytest.mark.django_db
def test_a_redacted_value_never_moves_to_where_it_would_show(test_redis):
    row = planted_row()
    with pytest.raises(EditRefused, match="does not accept"):  # still refused as it was
        dead_letter_edit_requeue(dead_letter_id=row.pk, reason="x", actor="ops",
                                 payload='{"args": ["[redacted]"], "kwargs": {"pw": 1}}')
    try:
        dead_letter_edit_requeue(dead_letter_id=row.pk, reason="swap", actor="ops", payload=(
            '{"args": ["[redacted]", "[redacted]"], "kwargs": {"session": "[redacted]"}}'))
    finally:
        test_redis.delete(BULK)
    row.refresh_from_db()
    # The username was shown as it is: "[redacted]" there is what the operator typed.
    assert row.args == ["[redacted]", SECRETS["positional"]]
    assert row.kwargs == {"session": SECRETS["keyword"]}


@pytest.mark.django_db
@ANY_INPUT
@given(payload=st.one_of(
    st.text(max_size=80),
    st.fixed_dictionaries({}, optional={
        "args": st.lists(st.sampled_from(["[redacted]", "x", 1, None]), max_size=5),
        "kwargs": st.dictionaries(st.sampled_from(["session", "hold", "password", "x"]),
                                  st.sampled_from(["[redacted]", "y", 2]), max_size=3),
        "other": st.just(1)}).map(json.dumps)),
    reason=st.sampled_from(["", "  ", "fixing it"]))
@example(payload='{"args": ["alice", "\\u0000"]}', reason="fixing it")
@example(payload='{"args": ["a"], "kwargs": {"\\u0000": 1}}', reason="fixing it")
def test_any_edit_is_answered_and_a_refused_one_changes_nothing(payload, reason, operator,
                                                                test_redis):
    row = planted_row()
    try:
        response = operator.post(reverse("admin:workers_deadletter_edit", args=[row.pk]),
                                 {"payload": payload, "reason": reason})
    finally:
        test_redis.delete(BULK)  # an accepted edit's replay was never meant to run

    # A raw NUL in a form field is refused before any view (workers/ops/request_guards.py).
    assert response.status_code in ((400,) if "\x00" in payload + reason else (200, 302))
    stored = DeadLetter.objects.get(pk=row.pk)
    if response.status_code != 302:  # refused, and says why
        if response.status_code == 200:
            assert 'id="edit-error"' in response.content.decode()
        assert (stored.args, stored.kwargs, stored.status) == (row.args, row.kwargs, "new")
        assert not DeadLetterEvent.objects.filter(dead_letter=row).exists()
    assert shown_secrets(response.content.decode()) == []


@pytest.mark.django_db
def test_a_viewer_cannot_search_a_message_for_its_secret(viewer, admin_client):
    """A search on messages answered "found" or "not found" for each guessed prefix of a
    secret shown redacted: only those who may see payloads search messages."""
    row = DeadLetterFactory(message="login failed for {'password': 'hunter2-secret'}")
    changelist = reverse(CHANGELIST)
    groups = reverse("admin:workers_deadletter_groups")
    for client, finds in ((viewer, False), (admin_client, True)):
        listed = client.get(changelist, {"q": "hunter2"}).content.decode()
        assert (f"/{row.pk}/change/" in listed) is finds
        grouped = client.get(groups, {"q": "hunter2", "show": "all"}).content.decode()
        assert (row.fingerprint in grouped) is finds


@pytest.mark.django_db
def test_no_filter_in_the_address_bar_reads_what_pages_redact(viewer, admin_client):
    """`?kwargs__password__startswith=` answered "1 dead letter" or "0": a secret read a
    character at a time. Every lookup on a redacted field, and every regex, is a 400."""
    DeadLetterFactory(kwargs={"password": "PLANT-KW-1"}, message="token=PLANT-MSG-2")
    changelist = reverse(CHANGELIST)
    for client in (viewer, admin_client):
        for lookup in ({"kwargs__password__startswith": "PLANT"}, {"args__0__contains": "k"},
                       {"message__contains": "PLANT"}, {"traceback__icontains": "x"},
                       {"raw_body__startswith": "x"}, {"task_name__regex": "("},
                       {"original_kwargs__isnull": "False"}):
            assert client.get(changelist, lookup).status_code == 400, lookup
    assert viewer.get(changelist, {"status__exact": "new"}).status_code == 200


@pytest.mark.django_db
def test_a_search_by_cause_is_recorded_for_payload_searchers(admin_client, operator):
    admin_client.get(reverse("admin:workers_deadletter_groups"), {"q": "hunter2"})
    operator.get(reverse("admin:workers_deadletter_groups"), {"q": "hunter2"})
    (event,) = DeadLetterEvent.objects.filter(action="searched_payload")
    assert event.actor == "admin"


@pytest.mark.django_db
def test_a_short_secret_quoted_bare_is_hidden_where_it_stands_alone(viewer, capsys):
    """A PIN is shorter than what is hidden wherever it occurs: it is hidden as a word."""
    row = DeadLetterFactory(task_name="tests.tasks.login", args=["bob", "1234"],
                            message="refused for bob using 1234 (attempt 12345)")

    detail = viewer.get(reverse("admin:workers_deadletter_change", args=[row.pk]))
    call_command("dlq", "show", str(row.pk))

    for shown in (detail.content.decode(), capsys.readouterr().out):
        assert "using [redacted] (attempt 12345)" in shown
        assert "using 1234" not in shown


@pytest.mark.django_db
def test_the_audit_trail_shows_a_viewer_that_a_search_happened_but_not_its_term(
        viewer, admin_client):
    row = DeadLetterFactory(message="refused for dave using opensesame-guess")
    admin_client.get(reverse(CHANGELIST), {"q": "opensesame-guess"})
    trail = reverse("admin:workers_deadletterevent_changelist")
    event = DeadLetterEvent.objects.get(action="searched_payload")
    detail = reverse("admin:workers_deadletterevent_change", args=[event.pk])

    for_viewer = [viewer.get(url).content.decode() for url in (
        trail, detail, f"{trail}?q=opensesame-guess")]
    for_searcher = admin_client.get(trail).content.decode()

    assert ["opensesame" in page for page in for_viewer[:2]] == [False, False]
    assert "Searched the payloads" in for_viewer[0]
    assert "only those who may search payloads see the term" in for_viewer[1]
    assert f"/{event.pk}/change/" not in for_viewer[2]  # its own term echoed, no row found
    assert "opensesame-guess" in for_searcher
    assert row.pk


@pytest.mark.django_db
def test_no_filter_in_the_outbox_s_address_bar_reads_what_its_pages_redact(viewer,
                                                                           admin_client):
    """The outbox's rows show their payloads redacted: the same refusal as the list's."""
    OutboxMessage.objects.create(task_id="plant", task_name="tests.tasks.login",
                                 queue=BULK, args=["ann", "PLANT-OUT-3"],
                                 kwargs={"password": "PLANT-OUT-4"},
                                 headers={"authorization": "PLANT-OUT-5"},
                                 last_error="token=PLANT-OUT-6")
    outbox = reverse("admin:workers_outboxmessage_changelist")
    for client in (viewer, admin_client):
        for lookup in ({"kwargs__password__startswith": "PLANT"}, {"args__1": "PLANT-OUT-3"},
                       {"headers__authorization__contains": "P"},
                       {"last_error__contains": "PLANT"}, {"task_name__iregex": "("}):
            assert client.get(outbox, lookup).status_code == 400, lookup
    assert viewer.get(outbox, {"queue__exact": BULK}).status_code == 200


@pytest.mark.django_db
def test_the_cli_writes_stored_ids_and_names_as_one_line_of_plain_text(capsys):
    """A task id, name or queue is whatever a producer wrote: its escape sequences cleared
    an operator's screen or retitled the terminal, and its newlines forged lines."""
    DeadLetterFactory(task_name="evil\x1b[2J\x1b[31mFAKE\nforged line",
                      task_id="id\x1b]0;title\x07\r-done", queue="bulk\u202e",
                      exception_type="Boom\x1b[0m", worker="w\x08")

    for command in (["list"], ["show", str(DeadLetter.objects.get().pk)], ["groups"]):
        call_command("dlq", *command)
        output = capsys.readouterr().out
        assert not set(output) & set("\x1b\x07\x08\r\u202e"), command
        assert "evil\\u001b[2J" in output, command
        assert not any(line.startswith("forged") for line in output.splitlines()), command
