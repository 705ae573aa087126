"""The operations console: the landing page of "Background jobs" in the admin."""

import json
import re
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from config.celery import app
from tests import tasks
from tests.fixtures import HANG, ROOT, wait_for
from tests.ledger.models import Effect
from tests.polling import poll_until
from workers.core.platform_redis import redis_client
from workers.runtime.heartbeat_records import BEAT_LOCK_KEY, WORKERS_KEY
from workers.runtime.metric_store import parse_field, read_hosts
from workers.runtime.task_history import history_write, slot_of

CONSOLE = "/admin/workers/"


def row(html: str, attribute: str, value: str) -> str:
    """The HTML of the table row whose data-`attribute` is `value`."""
    match = re.search(rf'<tr[^>]*data-{attribute}="{re.escape(value)}"[^>]*>(.*?)</tr>', html,
                      re.S)
    assert match, f"no row {attribute}={value}"
    return match.group(0)


def cell(html: str, css_class: str) -> str:
    match = re.search(rf'class="{css_class}">([^<]*)<', html)
    assert match, css_class
    return match.group(1).strip()


@pytest.fixture
def quiet_history(test_redis):
    """No heartbeat or history from another test in this Redis."""
    client = redis_client()
    for key in [WORKERS_KEY, *client.scan_iter("workers:history:*")]:
        client.delete(key)


@pytest.mark.django_db
def test_queues_workers_and_schedules_at_a_glance(admin_client, quiet_history):
    now = time.time()
    pipe = redis_client().pipeline(transaction=False)
    history_write(pipe, {("critical", "apps.x.tasks.a"): {slot_of("started"): 7,
                                                          slot_of("succeeded"): 6,
                                                          slot_of("failed"): 1},
                         ("critical", "apps.x.tasks.b"): {slot_of("started"): 100,
                                                          slot_of("succeeded"): 100}}, now=now)
    pipe.hset(WORKERS_KEY, mapping={
        "critical@up": json.dumps({"at": now, "queues": ["critical"], "active": 2,
                                   "concurrency": 4, "pool": "prefork",
                                   "started_at": now - 600}),
        "bulk@gone": json.dumps({"at": now - 3600, "queues": ["bulk"], "active": 0})})
    pipe.set(BEAT_LOCK_KEY, "beat-host:4242", ex=30)
    pipe.execute()
    every_minute = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="console-entry", task="workers.tasks.sweep_outbox",
                                interval=every_minute)
    PeriodicTask.objects.create(name="celery.backend_cleanup", task="celery.backend_cleanup",
                                interval=every_minute)  # beat adds it itself
    past_the_hour = CrontabSchedule.objects.create(minute="5", hour="*", timezone="UTC")
    PeriodicTask.objects.create(name="console-cron", task="workers.tasks.sweep_outbox",
                                crontab=past_the_hour)

    html = admin_client.get(CONSOLE).content.decode()

    critical = row(html, "queue", "critical")
    assert cell(critical, "started") == "107"
    assert cell(critical, "failed") == "1"
    assert cell(critical, "live-workers") == "1"
    # The alert's rule: by task over 10 minutes, though the queue as a whole fails 0.9 %.
    assert 'data-state="warn"' in critical
    assert "apps.x.tasks.a failed 14.3% of its runs in the last 10 minutes" in critical
    assert "0.9 %" in critical
    bulk = row(html, "queue", "bulk")
    assert 'data-state="bad"' in bulk
    assert "no live worker consumes it" in bulk
    assert "lost: silent for" in row(html, "worker", "bulk@gone")
    assert "s ago" in row(html, "worker", "critical@up")
    every = row(html, "entry", "console-entry")
    assert cell(every, "schedule-text") == "every 60 seconds"
    assert re.search(r'class="next-run"><time datetime="\d{4}-', every)
    assert "run-now" in every
    assert "run-now" not in row(html, "entry", "celery.backend_cleanup")  # not ours to send
    cron = row(html, "entry", "console-cron")
    assert cell(cron, "schedule-text") == "At 5 minutes past the hour UTC"
    assert re.search(r'class="next-run"><time datetime="[-\d]+T\d\d:05:00\+00:00"', cron)
    assert "beat-host:4242</strong>, which holds the lock" in html
    assert "Dead letters" in html  # the app's own list of models stays below
    redis_client().delete(BEAT_LOCK_KEY)
    assert "No beat holds the lock" in admin_client.get(CONSOLE).content.decode()


@pytest.mark.django_db
def test_an_entry_beat_cannot_compute_is_listed_with_why_beside_the_others(admin_client,
                                                                         quiet_history):
    sunrise = SolarSchedule.objects.create(event="sunrise", latitude=48.85, longitude=2.35)
    PeriodicTask.objects.create(name="at-sunrise", task="tests.tasks.beat_tick", solar=sunrise)
    entry_running("beside-it")

    html = admin_client.get(CONSOLE).content.decode()

    assert "beat cannot compute it:" in row(html, "entry", "at-sunrise")
    assert re.search(r'class="next-run"><time datetime="\d{4}-',
                     row(html, "entry", "run-now-beside-it"))


@pytest.mark.django_db
def test_a_staff_member_without_a_jobs_permission_sees_no_console(client, quiet_history):
    clerk = User.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(clerk)
    assert client.get(CONSOLE).status_code == 404
    clerk.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
    entry = entry_running("clerk")
    html = client.get(CONSOLE).content.decode()
    assert entry.name in html
    assert f"/periodictask/{entry.pk}/change/" not in html  # a link it may not follow


def test_the_console_counts_what_metrics_count_on_a_live_worker(live_workers, admin_client):
    """The started figure of a queue is /metrics' celery_task_started_total for it."""

    def exposed() -> float:
        return sum(amount for series in read_hosts().values()
                   for raw, amount in series.items()
                   if (name_labels := parse_field(raw))[0] == "celery_task_started"
                   and name_labels[1][1] == "critical")

    def figures() -> tuple[int, float] | None:
        """Both figures, or None if a flush landed while the page was built (other tests'
        jobs may still run on critical): the page and /metrics read the same moment."""
        before = exposed()
        shown = int(cell(row(admin_client.get(CONSOLE).content.decode(), "queue", "critical"),
                         "started"))
        return (shown, before) if exposed() == before else None

    shown_before, exposed_before = wait_for(figures, what="a moment without a flush")
    for n in range(4):
        tasks.log_line.apply_async(args=[f"console-{n}"], queue="critical")
    seen: list[tuple[int, float]] = [(0, 0)]

    def settled() -> bool:  # other tests' jobs may run on critical meanwhile: >= 4
        read = figures()
        if read is None:
            return False
        seen[0] = (read[0] - shown_before, read[1] - exposed_before)
        return seen[0][0] == seen[0][1] >= 4

    if not poll_until(settled, timeout=HANG):
        pytest.fail(f"the four runs never agreed on the console and in /metrics: last seen "
                    f"console +{seen[0][0]}, /metrics +{seen[0][1]:g}")


def entry_running(key: str) -> PeriodicTask:
    every_hour = IntervalSchedule.objects.create(every=3600, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name=f"run-now-{key}", task="tests.tasks.record_effect",
                                       args=json.dumps([key]), queue="critical",
                                       interval=every_hour)


def test_run_now_sends_the_entry_once_per_minute_and_records_who(live_workers, admin_client,
                                                                  admin_user):
    key = f"run-now-{time.time_ns()}"
    entry = entry_running(key)

    first = admin_client.post(CONSOLE, {"run_now": entry.name}, follow=True)
    second = admin_client.post(CONSOLE, {"run_now": entry.name}, follow=True)

    assert f"Sent now: {entry.name} (task" in first.content.decode()
    assert f"Already run now this minute: {entry.name}" in second.content.decode()
    wait_for(lambda: Effect.objects.filter(key=key).exists(), what="the entry's job to run")
    logged = LogEntry.objects.get(object_id=str(entry.pk))
    assert logged.user == admin_user
    assert "Run now from the console: task" in logged.get_change_message()
    assert Effect.objects.filter(key=key).count() == 1  # the second click sent nothing


@pytest.mark.django_db
def test_run_now_the_broker_refuses_sends_nothing_and_leaves_the_minute_free(
        admin_client, quiet_history, monkeypatch):
    entry = entry_running(f"refused-{time.time_ns()}")

    def refused(*args, **kwargs):
        raise KombuOperationalError("connection refused")

    with monkeypatch.context() as patch:  # the broker goes away between the check and the send
        patch.setattr(app, "send_task", refused)
        first = admin_client.post(CONSOLE, {"run_now": entry.name}, follow=True)
    second = admin_client.post(CONSOLE, {"run_now": entry.name}, follow=True)

    assert (f"Not sent ({entry.name}): the broker refused it (OperationalError)"
            in first.content.decode())
    assert f"Sent now: {entry.name} (task" in second.content.decode()
    assert LogEntry.objects.count() == 1


@pytest.mark.django_db
def test_run_now_without_redis_says_so_and_sends_nothing(admin_client, quiet_history,
                                                         monkeypatch):
    entry = entry_running(f"no-redis-{time.time_ns()}")

    def unreachable(**_):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr("workers.ops.schedules.dedup_claim", unreachable)
    html = admin_client.post(CONSOLE, {"run_now": entry.name}, follow=True).content.decode()

    assert f"Not sent ({entry.name}): Redis, which keeps it to once a minute" in html
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_a_long_posted_name_is_echoed_cut_short(admin_client, quiet_history):
    html = admin_client.post(CONSOLE, {"run_now": "x" * 100_000}, follow=True).content.decode()
    assert "x" * 200 in html
    assert "x" * 201 not in html


@pytest.mark.django_db
def test_a_viewer_sees_no_run_now_and_cannot_post_one(client, quiet_history):
    entry = entry_running("viewer")
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deadletter"),
                                Permission.objects.get(codename="view_periodictask"))
    client.force_login(viewer)

    assert "Run now" not in client.get(CONSOLE).content.decode()
    assert client.post(CONSOLE, {"run_now": entry.name}).status_code == 403
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=300))
def test_any_entry_name_posted_is_refused_with_a_reason_and_sends_nothing(admin_client, name):
    response = admin_client.post(CONSOLE, {"run_now": name})
    assert response.status_code in (302, 400)  # 400: a NUL, refused before any view
    assert not LogEntry.objects.exists()


def not_a_json_list(text: str) -> bool:
    """What beat could not send either (it reads no arguments as none)."""
    try:
        return not isinstance(json.loads(text or "[]"), list)
    except ValueError:
        return True


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
                    max_size=200).filter(not_a_json_list))  # what PostgreSQL can store
def test_an_entry_whose_arguments_beat_could_not_send_is_refused_and_keeps_its_minute(
        admin_client, quiet_history, args):
    entry = entry_running(f"bad-args-{time.time_ns()}")
    PeriodicTask.objects.filter(pk=entry.pk).update(args=args)

    for _ in range(2):  # refused for what it is each time, not "already run this minute"
        html = admin_client.post(CONSOLE, {"run_now": entry.name}, follow=True)
        assert html.status_code == 200
        assert f"Not sent ({entry.name}): its arguments" in html.content.decode()
    assert not LogEntry.objects.filter(object_id=str(entry.pk)).exists()


def test_a_job_waiting_for_its_retry_is_listed_until_the_retry_ends(live_workers,
                                                                    admin_client):
    key = f"retry-{time.time_ns()}"
    result = tasks.retries_once.apply_async(args=[key, 5], kwargs={"api_key": "plain-8c1e4f"},
                                            queue="critical")

    def listed() -> str | None:
        html = admin_client.get(CONSOLE).content.decode()
        return html if f'data-task-id="{result.id}"' in html else None

    html = str(wait_for(listed, what="the job in Retrying now"))
    waiting = row(html, "task-id", result.id)
    assert "tests.tasks.retries_once" in waiting
    assert cell(waiting, "attempt") == "1"
    assert "gateway refused key" in waiting
    assert "sk_live_" not in waiting  # the error is shown redacted
    assert "plain-8c1e4f" not in waiting  # and its secret argument, quoted bare, too
    wait_for(lambda: listed() is None, what="the retry to end and leave the list")


def test_a_progress_bar_holds_its_figure_within_bounds():
    from workers.core.progress_bar import progress_bar

    assert 'value="40" max="100"' in progress_bar(40, note="3 in flight")
    assert "40% (3 in flight)" in progress_bar(40, note="3 in flight")
    assert 'value="100"' in progress_bar(250)
    assert 'value="0"' in progress_bar(-5)


DOWN = "redis://127.0.0.1:1/0"  # nothing listens there


def console_in_a_process_of_its_own(env: dict[str, str]) -> str:
    script = ("import django; django.setup(); from django.test import Client; "
              "from django.contrib.auth.models import User; "
              "client = Client(SERVER_NAME='localhost'); "
              "client.force_login(User.objects.get(username='ops')); "
              "response = client.get('/admin/workers/'); print(response.status_code); "
              "print(response.content.decode())")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=HANG, check=False, env=env)
    status, _, html = done.stdout.partition("\n")
    assert status == "200", done.stderr[-2000:]
    return html


def test_with_the_broker_down_the_console_shows_the_rest_and_says_why(process_env,
                                                                      transactional_db):
    """Opened because something is down: a dead broker empties its own panel only."""
    User.objects.create_superuser("ops", password="ops-password")
    html = console_in_a_process_of_its_own(process_env | {
        "CELERY_BROKER_URL": DOWN, "REDIS_URL": django_settings.REDIS_URL})
    assert ('data-panel="queues">Not available: ConnectionError: the broker does not answer'
            in html)
    assert 'id="console-workers"' in html
    assert 'data-panel="workers"' not in html


def test_with_redis_down_the_console_does_not_say_that_nothing_is_scheduled(
        process_env, transactional_db):
    User.objects.create_superuser("ops", password="ops-password")
    html = console_in_a_process_of_its_own(process_env | {
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL, "REDIS_URL": DOWN})
    assert "Which beat holds the lock is not available: ConnectionError" in html
    assert "No beat holds the lock" not in html
    assert 'id="console-schedules"' in html
    assert 'data-panel="workers">Not available' in html
