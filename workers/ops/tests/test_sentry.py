"""What reaches Sentry from a real worker, beat and web process, captured by a local
stand-in."""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.faults.servers import free_port
from tests.fixtures import PRIVATE_BROKER, ROOT, publish_task, wait_for
from tests.sentry_server import SentryStandIn
from tests.tasks import EXCEPTION_SECRET, LOGGED_SECRET
from workers.ops.sentry import _sub_minute_schedules

CARD = "4242424242424242"


@pytest.fixture
def sentry() -> Iterator[SentryStandIn]:
    server = SentryStandIn()
    server.thread.start()
    yield server
    server.shutdown()


@pytest.fixture
def spawn(celery_process, sentry, test_redis):
    def start(command: str, *args: str, **env: str) -> None:
        celery_process(command, *args, SENTRY_DSN=sentry.dsn, **env)
    return start


def test_one_event_per_failed_job_none_for_a_retry_and_no_secret_in_any(spawn, sentry):
    spawn("worker")
    retried_then_ok = publish_task(PRIVATE_BROKER, "tests.tasks.transient_until", "s-ok", 1)
    retried_then_failed = publish_task(PRIVATE_BROKER, "tests.tasks.transient_until", "s-fail", 99)
    card_holder = publish_task(PRIVATE_BROKER, "tests.tasks.permanent", "s-card", card_number=CARD)

    wait_for(lambda: len(sentry.items("event")) >= 2, what="the failures' events")
    # The job that recovered after a retry has run to its end by the time both failures
    # (sent after it) have their events; the two failures have exactly one each.
    events = sentry.items("event")
    ids = sorted(event["tags"]["celery_task_id"] for event in events)
    assert ids == sorted([retried_then_failed, card_holder]), events
    assert retried_then_ok not in ids
    raw = sentry.raw().decode(errors="replace")
    assert CARD not in raw, raw[max(0, raw.find(CARD) - 400):raw.find(CARD) + 100]


def test_beat_entries_send_cron_check_ins(spawn, sentry):
    every_minute = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(name="sentry-monitored tick", task="tests.tasks.beat_tick",
                                interval=every_minute, queue="critical",
                                last_run_at=timezone.now() - timedelta(minutes=5))
    spawn("worker")
    spawn("beat", "--pidfile", "", BEAT_LOCK_TTL="3")

    def check_ins(status: str) -> list[dict]:
        return [c for c in sentry.items("check_in")
                if c.get("status") == status and c["monitor_slug"] == "sentry-monitored tick"]

    wait_for(lambda: check_ins("in_progress"), what="beat's check-in as it sends")
    wait_for(lambda: check_ins("ok"), what="the worker's check-in when the run succeeds")


def test_entries_sentry_crons_cannot_monitor_are_excluded_not_warned_about_each_send():
    excluded = _sub_minute_schedules()
    assert {"workers-outbox-sweep", "workers-dead-letter-spool-drain"} <= set(excluded)
    assert "billing-dunning" not in excluded  # a crontab: monitored


def leaks(sentry: SentryStandIn, planted: dict[str, str]) -> str:
    """Each planted secret found in anything the stand-in received, with what surrounds it
    (empty when none is)."""
    raw = sentry.raw().decode(errors="replace")
    return "\n".join(f"{where}: ...{raw[max(0, raw.find(secret) - 300):raw.find(secret) + 60]}"
                     for where, secret in planted.items() if secret in raw)


def test_no_secret_of_a_failing_task_reaches_sentry_and_its_events_still_say_what_failed(
        spawn, sentry):
    spawn("worker")
    planted = {"positional argument": "tb-positional-11aa22bb",
               "keyword argument": "tb-keyword-66ee77ff",
               "sensitive keyword argument": "tb-card-33cc44dd",
               "exception message": EXCEPTION_SECRET, "log parameter": LOGGED_SECRET}
    task_id = publish_task(PRIVATE_BROKER, "tests.tasks.fails_holding_secrets",
                           planted["positional argument"], memo=planted["keyword argument"],
                           card_number=planted["sensitive keyword argument"])

    def failure_and_log_line() -> tuple[dict, dict] | None:
        events = sentry.items("event")
        failure = next((event for event in events if event.get("exception")), None)
        logged = next((event for event in events if event.get("logentry")), None)
        return (failure, logged) if failure and logged else None

    failure, logged = wait_for(failure_and_log_line, what="the failure's and the log's events")
    leaked = leaks(sentry, planted)
    assert not leaked, leaked
    assert failure["exception"]["values"][-1]["type"] == "ValueError"
    assert failure["extra"]["celery-job"]["task_name"] == "tests.tasks.fails_holding_secrets"
    assert failure["tags"]["celery_task_id"] == task_id
    assert logged["logentry"]["message"] == "the payment provider refused api key %s"


#: Planted in the web process's settings and in one request to it.
WEB_SECRETS = {"ingest token": "tb-ingest-token-9e8d7c6b", "query string": "tb-query-0a1b2c3d",
               "cookie": "tb-cookie-4e5f6a7b", "stripe signature": "tb-signature-8c9d0e1f",
               "database password": "tb-database-2a3b4c5d"}


@pytest.fixture
def web_without_database(process_env, sentry, tmp_path) -> Iterator[str]:
    """The web application under gunicorn reporting to the stand-in, with its ingest token
    set and its database unreachable (a password it would send, a database that does not
    exist): every ingest that passes the token check then fails. Yields its base URL."""
    port = free_port()
    env = process_env | {
        "CELERY_BROKER_URL": PRIVATE_BROKER, "ALLOWED_HOSTS": "127.0.0.1",
        "SENTRY_DSN": sentry.dsn, "ANALYTICS_INGEST_TOKEN": WEB_SECRETS["ingest token"],
        "DATABASE_URL": f"postgres://postgres:{WEB_SECRETS['database password']}"
                        f"@127.0.0.1:5432/no_such_database_for_sentry_tests"}
    with (tmp_path / "web.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _status(f"{url}/healthz") == 200, what="gunicorn to serve /healthz")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _status(url: str, **request: object) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, **request),
                                    timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_no_secret_of_a_failing_web_request_reaches_sentry(web_without_database, sentry):
    """The bearer token also sits in the ingest view's local `given`, the query string in
    the request's repr, the database password in the driver's connection string."""
    body = {"events": [{"name": "signup", "occurred_at": "2026-11-24T10:00:00Z"}]}
    status = _status(
        f"{web_without_database}/api/events/?api_key={WEB_SECRETS['query string']}&page=2",
        method="POST", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {WEB_SECRETS['ingest token']}",
                 "Content-Type": "application/json",
                 "Cookie": f"sessionid={WEB_SECRETS['cookie']}",
                 "Stripe-Signature": f"t=1,v1={WEB_SECRETS['stripe signature']}"})
    assert status == 500

    event = wait_for(lambda: next((event for event in sentry.items("event")
                                   if event.get("exception")), None), what="the request's event")
    leaked = leaks(sentry, WEB_SECRETS)
    assert not leaked, leaked
    assert event["exception"]["values"][-1]["type"] == "OperationalError"
    assert event["request"]["url"].endswith("/api/events/")
    assert "page=2" in event["request"]["query_string"]
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any(frame["function"] == "ingest_events" for frame in frames)
