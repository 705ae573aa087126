"""Dead-letter triage on the paths production takes: a fresh process, `manage.py` as a
process of its own, and the admin under gunicorn with two workers.

The in-process tests (Django's test client, `call_command`) run in a process that has
imported every task module; gunicorn's workers and a CLI process import only what their
code path touches, which is how an edit was once refused as "not registered" by one
gunicorn worker and accepted by the next.
"""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest
import requests
import stripe
from django.conf import settings
from django.contrib.auth.models import Group, User

from apps.billing.models import PaymentEvent
from apps.billing.samples import stripe_event
from apps.billing.tasks import process_payment_event
from apps.notifications.models import Kind, Notification
from tests.factories import WEBHOOK_SECRET, WEBHOOK_URL, DeadLetterFactory, dead_letter_roles
from tests.fixtures import HANG, ROOT, project_tasks, wait_for
from tests.production import admin_session, manage_py, post_form, production_env
from workers.core.models import OutboxMessage
from workers.dead_letters.models import DeadLetter, DeadLetterEvent, Redrive

SEND_NOTIFICATION = "apps.notifications.tasks.send_notification"  # (notification_id: int)
MISSING_ID = 2_000_000_000  # no notification has it
WRONG_ARGUMENTS = json.dumps({"args": [1, 2, 3], "kwargs": {"priority": "high"}})
PASSWORD = "production-path-password"
ERROR_NOTE = re.compile(r'<p class="errornote" id="edit-error">(.*?)</p>', re.DOTALL)


def notification_dead_letter(*, notification_id: int = MISSING_ID,
                             status: str = DeadLetter.Status.NEW) -> DeadLetter:
    """A send_notification job that failed because its notification did not exist."""
    return DeadLetterFactory(
        task_name=SEND_NOTIFICATION, queue="critical", args=[notification_id], kwargs={},
        exception_type="apps.notifications.services.NotificationNotFound",
        message=f"notification {notification_id} does not exist", status=status)


def pending_notification() -> Notification:
    return Notification.objects.create(
        kind=Kind.WELCOME, recipient="production-path@example.com", subject="Welcome",
        body="Hello", idempotency_key=f"production-path:{uuid.uuid4()}")


def staff_user(username: str, role: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    dead_letter_roles()
    user.groups.add(Group.objects.get(name=role))
    return user


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr[-3000:]}"


# --- a fresh process -------------------------------------------------------------------

RESOLVE_IN_A_FRESH_PROCESS = """
import json, sys
import django
django.setup()
from celery import current_app
from workers.core.task_registry import project_task
names = json.load(sys.stdin)
imported_at_start = sorted(name for name in names if name in current_app.tasks)
found = {name: getattr(project_task(name), "name", None) for name in names}
print(json.dumps({"found": found, "imported_at_start": imported_at_start}))
"""


def test_a_fresh_process_finds_every_project_task_and_no_celery_built_in(process_env):
    # project_tasks() holds Celery's built-ins too (celery.chord, ...): not the project's.
    expected = [task.name for task in project_tasks() if not task.name.startswith("celery.")]
    assert SEND_NOTIFICATION in expected
    built_ins = ["celery.starmap", "celery.accumulate"]

    result = subprocess.run([sys.executable, "-c", RESOLVE_IN_A_FRESH_PROCESS], cwd=ROOT,
                            env=process_env, input=json.dumps(expected + built_ins),
                            capture_output=True, text=True, timeout=HANG, check=False)

    assert result.returncode == 0, output(result)
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    found = answer["found"]
    missing = [name for name in expected if found[name] != name]
    assert not missing, (f"a fresh process does not find {missing} (it had imported "
                         f"{answer['imported_at_start']} before asking)")
    assert {name: found[name] for name in built_ins} == dict.fromkeys(built_ins)


# --- manage.py as a process of its own -------------------------------------------------

def test_cli_output_to_a_reader_that_went_away_ends_without_a_traceback(process_env,
                                                                         transactional_db):
    """`manage.py dlq list | head`: the reader closes the pipe while the command writes."""
    for _ in range(3):
        DeadLetterFactory()
    reader, writer = os.pipe()
    os.close(reader)  # gone before the command writes its first line
    try:
        result = subprocess.run([sys.executable, "manage.py", "dlq", "list"], cwd=ROOT,
                                env=process_env, stdout=writer, stderr=subprocess.PIPE,
                                text=True, timeout=HANG, check=False)
    finally:
        os.close(writer)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "BrokenPipe" not in result.stderr, result.stderr


def test_cli_edit_requeues_a_notification_with_corrected_arguments(process_env, live_workers):
    notification = pending_notification()
    row = notification_dead_letter()

    result = manage_py("dlq", "edit", str(row.pk),
                       json.dumps({"args": [notification.pk], "kwargs": {}}), "--reason", "x",
                       env=process_env)

    assert result.returncode == 0, output(result)
    row.refresh_from_db()
    # With the workers running, the replay may already have succeeded.
    assert row.status in (DeadLetter.Status.REQUEUED, DeadLetter.Status.RESOLVED)
    assert (row.args, row.original_args, row.requeue_count) == ([notification.pk],
                                                                [MISSING_ID], 1)
    assert row.requeued_by.startswith("cli:")
    wait_for(lambda: DeadLetter.objects.get(pk=row.pk).status == DeadLetter.Status.RESOLVED,
             what="the edited replay to succeed")
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT


def test_cli_edit_refuses_arguments_the_task_does_not_accept(process_env, transactional_db):
    row = notification_dead_letter()

    result = manage_py("dlq", "edit", str(row.pk), WRONG_ARGUMENTS, "--reason", "x",
                       env=process_env)

    assert result.returncode != 0, output(result)
    assert "not registered" not in result.stderr, output(result)
    assert "does not accept these arguments" in result.stderr, output(result)
    row.refresh_from_db()
    assert (row.status, row.args, row.original_args) == ("new", [MISSING_ID], None)
    assert not OutboxMessage.objects.exists()


def test_cli_requeue_leaves_an_audit_event(process_env, live_workers):
    row = notification_dead_letter(notification_id=pending_notification().pk)

    result = manage_py("dlq", "requeue", str(row.pk), env=process_env)

    assert result.returncode == 0, output(result)
    # The replay ends before the test does, whatever the audit trail says.
    wait_for(lambda: DeadLetter.objects.get(pk=row.pk).status == DeadLetter.Status.RESOLVED,
             what="the replay to succeed")
    assert_one_cli_event(DeadLetterEvent.Action.REQUEUED)


@pytest.mark.parametrize(("command", "status", "action"), [
    (["discard"], DeadLetter.Status.NEW, DeadLetterEvent.Action.DISCARDED),
    (["purge", "--status", "discarded"], DeadLetter.Status.DISCARDED,
     DeadLetterEvent.Action.PURGED),
])
def test_cli_discard_and_purge_leave_an_audit_event(process_env, transactional_db, command,
                                                    status, action):
    row = notification_dead_letter(status=status)

    result = manage_py("dlq", command[0], str(row.pk), *command[1:], env=process_env)

    assert result.returncode == 0, output(result)
    assert_one_cli_event(action)


def assert_one_cli_event(action: str) -> None:
    events = [(event.actor, event.count)
              for event in DeadLetterEvent.objects.filter(action=action)]
    assert len(events) == 1, f"{action} events in the audit trail: {events}"
    actor, count = events[0]
    assert actor.startswith("cli:"), events
    assert count == 1, events


# --- the admin under gunicorn ----------------------------------------------------------

def test_gunicorn_serves_the_admins_static_files(gunicorn_server, admin_user):
    session = admin_session(gunicorn_server, "admin", "password")
    page = session.get(f"{gunicorn_server}/admin/workers/deadletter/", timeout=HANG)
    assert page.status_code == 200
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    assert any(asset.endswith(".css") for asset in assets), assets
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        response = session.get(f"{gunicorn_server}{asset}", timeout=HANG)
        assert response.status_code == 200, f"{asset}: {response.status_code}"


def test_every_gunicorn_worker_checks_an_edit_against_the_tasks_signature(gunicorn_server):
    staff_user("operator", "Dead-letter operators")
    row = notification_dead_letter()
    session = admin_session(gunicorn_server, "operator", PASSWORD)
    url = f"{gunicorn_server}/admin/workers/deadletter/{row.pk}/edit/"

    answers = []
    for _ in range(8):
        response = post_form(session, url, {"payload": WRONG_ARGUMENTS, "reason": "x"})
        error = ERROR_NOTE.search(response.text)
        answers.append(f"{response.status_code}: {error.group(1).strip() if error else '-'}")

    assert all("does not accept these arguments" in answer for answer in answers), answers
    assert not any("not registered" in answer for answer in answers), answers
    row.refresh_from_db()
    assert (row.status, row.args, row.original_args) == ("new", [MISSING_ID], None)


def test_a_viewer_under_gunicorn_reads_but_requeues_nothing(gunicorn_server):
    staff_user("viewer", "Dead-letter viewers")
    row = notification_dead_letter(notification_id=pending_notification().pk)
    session = admin_session(gunicorn_server, "viewer", PASSWORD)
    changelist = f"{gunicorn_server}/admin/workers/deadletter/"
    assert session.get(changelist, timeout=HANG).status_code == 200

    action = post_form(session, changelist, {
        "action": "requeue", "_selected_action": str(row.pk), "index": "0",
        "select_across": "0", "confirmed": "yes", "frozen_ids": str(row.pk)},
        allow_redirects=False)
    edit = post_form(session, f"{changelist}{row.pk}/edit/",
                     {"payload": json.dumps({"args": [row.args[0]], "kwargs": {}}),
                      "reason": "x"}, form_page=changelist)
    redrive = post_form(session, f"{changelist}groups/",
                        {"action": "redrive", "fingerprint": row.fingerprint},
                        form_page=changelist, allow_redirects=False)

    # The action is not offered to a viewer: Django says "No action selected" (302).
    assert action.status_code in (302, 403), (action.status_code, action.text[:500])
    assert "requeued" not in action.text
    assert edit.status_code == 403, (edit.status_code, edit.text[:500])
    assert redrive.status_code == 403, (redrive.status_code, redrive.text[:500])
    row.refresh_from_db()
    assert (row.status, row.requeue_count) == ("new", 0)
    assert not DeadLetterEvent.objects.exclude(
        action=DeadLetterEvent.Action.VIEWED_PAYLOAD).exists()
    assert not OutboxMessage.objects.exists()
    assert not Redrive.objects.exists()


def test_a_viewer_under_gunicorn_sees_no_call_secret_quoted_bare_in_an_error(gunicorn_server):
    """Rows stored unhidden (by a process that did not know the task, or before workers
    hid such values) quote a positional password bare in their error text; gunicorn's
    workers hide it again, for a task they must import first and for one that is gone."""
    staff_user("viewer", "Dead-letter viewers")
    secret = "tb-bare-gunicorn-5e2c"
    rows = [DeadLetterFactory(task_name=name, args=["alice", secret],
                              message=f"login refused for alice using {secret}",
                              traceback=f"PermanentError: login refused using {secret}")
            for name in ("tests.tasks.login", "tests.tasks.removed_since")]
    session = admin_session(gunicorn_server, "viewer", PASSWORD)
    changelist = f"{gunicorn_server}/admin/workers/deadletter/"

    pages = [session.get(url, timeout=HANG) for url in (
        changelist, f"{changelist}groups/",
        *(f"{changelist}{row.pk}/change/" for row in rows))]

    assert [page.status_code for page in pages] == [200] * len(pages)
    assert all("login refused" in page.text for page in pages)
    assert not [page.url for page in pages if secret in page.text]


def test_the_audit_trail_under_gunicorn_keeps_a_searched_term_from_a_viewer(gunicorn_server):
    """The term of a payload search, recorded in the trail, through gunicorn: not on the
    viewer's list or detail page, not reachable by the viewer's search, ordering or a
    filter typed into the address bar (each answered without a 5xx); shown to a
    superuser."""
    staff_user("viewer", "Dead-letter viewers")
    User.objects.create_superuser("root", password=PASSWORD)
    term = "opensesame-gunicorn"
    event = DeadLetterEvent.objects.create(
        actor="admin", action=DeadLetterEvent.Action.SEARCHED_PAYLOAD,
        text=f"searched for {term!r}", detail={"filter": {"q": term}})
    trail = f"{gunicorn_server}/admin/workers/deadletterevent/"
    viewer = admin_session(gunicorn_server, "viewer", PASSWORD)

    own = [viewer.get(url, timeout=HANG) for url in (trail, f"{trail}{event.pk}/change/")]
    crafted = [viewer.get(trail, params=params, timeout=HANG) for params in (
        {"q": term}, {"q": "opensesame\x00"}, {"o": "-8"}, {"o": "8.-1"},
        {"text__startswith": "opensesame"}, {"detail__filter__q": term},
        {"shown_text_value": term}, {"action__exact": "searched_payload", "q": "opensesame"})]

    assert [page.status_code for page in own] == [200, 200]
    assert not [page.url for page in own if "opensesame" in page.text]
    assert "only those who may search payloads see the term" in own[1].text
    assert [page.status_code for page in crafted if page.status_code >= 500] == []
    # No search or filter of the viewer's tells whether the term is there: refused, or the
    # same answer as for a term nobody searched for.
    assert not [page.url for page in crafted[:2] + crafted[4:]
                if f"/{event.pk}/change/" in page.text]
    root = admin_session(gunicorn_server, "root", PASSWORD)
    assert term in root.get(f"{trail}{event.pk}/change/", timeout=HANG).text


def test_dlq_in_a_process_of_its_own_shows_no_bare_secret_and_says_what_it_does(
        process_env, transactional_db):
    secret = "tb-bare-cli-7d1e"
    rows = [DeadLetterFactory(task_name=name, args=["alice", secret],
                              message=f"login refused for alice using {secret}")
            for name in ("tests.tasks.login", "tests.tasks.removed_since")]

    results = [manage_py("dlq", *command, env=process_env) for command in (
        ["list"], ["groups"], *(["show", str(row.pk)] for row in rows),
        ["export", "--format", "json"], ["redrive-status", "--help"])]

    assert [result.returncode for result in results] == [0] * len(results), \
        [output(result) for result in results if result.returncode]
    assert not [output(result) for result in results if secret in result.stdout]
    assert all("login refused for" in result.stdout for result in results[:4])
    assert "a redrive's progress" in manage_py("dlq", "--help", env=process_env).stdout


def test_a_webhook_under_gunicorn_has_its_job_marked_by_the_workers_own_marker_thread(
        web_server, process_env, static_root):
    """The job's row is marked after the response, with no further request to ride on,
    by the gunicorn worker that published it (production marks in batches)."""
    base = web_server(**production_env(process_env, static_root) | {
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "OUTBOX_MARK_INTERVAL": "0.2"})
    body = json.dumps(stripe_event("invoice.paid", {"id": "in_marked", "object": "invoice"}))
    header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)

    response = requests.post(f"{base}{WEBHOOK_URL}", data=body.encode(), timeout=HANG,
                             headers={"Stripe-Signature": header,
                                      "Content-Type": "application/json"})

    assert response.status_code == 200, response.text
    stored = PaymentEvent.objects.get(object_id="in_marked")
    job = OutboxMessage.objects.get(task_name=process_payment_event.name, args=[stored.pk])
    wait_for(lambda: OutboxMessage.objects.filter(pk=job.pk, published_at__isnull=False)
             .exists(), what="the job's row marked published by the gunicorn worker")
