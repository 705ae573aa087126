"""Alerts from real workers to a local Slack-compatible webhook, and the threshold checks."""

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.core import mail
from django.utils import timezone

from tests.factories import DeadLetterFactory
from tests.fixtures import PRIVATE_BROKER, ROOT, publish_task, wait_for
from tests.webhook_server import WebhookSink
from workers.core.headers import ENQUEUED_AT_HEADER
from workers.core.models import OutboxMessage
from workers.core.platform_redis import redis_client
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.spool import SET_ASIDE_KEY, dead_letter_spool_set_aside
from workers.ops.alerts.checks import alerts_check_thresholds
from workers.ops.alerts.models import Alert
from workers.ops.alerts.services import alert_deliver, alert_raise, alerts_deliver_pending
from workers.ops.alerts.windows import REPEATS_KEY, WATCHING_KEY, WINDOWS_KEY
from workers.runtime.heartbeat_records import WORKERS_KEY


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    server = WebhookSink()
    yield server
    server.shutdown()


@pytest.fixture
def alerting(process_env, sink):
    """Environment of processes that alert to the sink on PRIVATE_BROKER (windows that end
    at the next check, so a test never waits out a clock), and a runner of `manage.py`."""
    env = {"ALERTS_SLACK_WEBHOOK_URL": sink.url, "ALERTS_REPEAT_MINUTES": "0",
           "ALERTS_BASE_URL": "https://ops.example.com"}

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
            env=process_env | {"CELERY_BROKER_URL": PRIVATE_BROKER, **env}, timeout=120,
            check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    return env, manage


def failures(texts: list[str]) -> list[str]:
    return [text for text in texts if text.startswith(("*New failure", "*Repeats: New failure"))]


def test_a_hundred_identical_failures_are_one_alert_and_one_digest(celery_process, alerting,
                                                                   sink):
    env, manage = alerting
    celery_process("worker", "-c", "2", **env)
    for order in range(100):
        publish_task(PRIVATE_BROKER, "tests.tasks.declines", order)
    wait_for(lambda: DeadLetter.objects.filter(task_name="tests.tasks.declines").count() == 100,
             what="100 dead letters")
    wait_for(lambda: Alert.objects.filter(delivered_at__isnull=False).count() == 1,
             what="the alert to be delivered")
    assert len({row.fingerprint for row in DeadLetter.objects.all()}) == 1
    (alert,) = failures(sink.texts())
    assert "New failure: tests.tasks.declines raised PermanentError" in alert
    fingerprint = DeadLetter.objects.first().fingerprint
    assert (f"https://ops.example.com/admin/workers/deadletter/?fingerprint={fingerprint}"
            "&status__exact=new") in alert

    manage("alerts", "check")  # the window has ended: its repeats go out as one digest
    alert, digest = failures(sink.texts())
    assert digest.startswith("*Repeats: New failure: tests.tasks.declines")
    assert "99 more" in digest

    publish_task(PRIVATE_BROKER, "tests.tasks.undeclared", "second-cause")
    wait_for(lambda: Alert.objects.filter(kind=Alert.Kind.FAILURE,
                                          delivered_at__isnull=False).count() == 2,
             what="the second fingerprint's alert")
    manage("alerts", "check")  # both windows end with no repeats: nothing more is sent
    assert [text.split("\n")[0] for text in failures(sink.texts())] == [
        "*New failure: tests.tasks.declines raised PermanentError*",
        "*Repeats: New failure: tests.tasks.declines raised PermanentError*",
        "*New failure: tests.tasks.undeclared raised ValueError*",
    ]


def test_thresholds_alert_once_and_a_worker_notices_a_silent_beat(celery_process, alerting,
                                                                  sink):
    env, manage = alerting
    publish_task(PRIVATE_BROKER, "tests.tasks.log_line", "waited",
                 headers={ENQUEUED_AT_HEADER: time.time() - 3600})
    OutboxMessage.objects.create(task_id="stuck", task_name="tests.tasks.log_line",
                                 queue="critical",
                                 created_at=timezone.now() - timedelta(hours=1))

    out = manage("alerts", "check")
    # Freshly watched: a missing beat or worker may only not have started yet.
    assert "2 threshold alert(s)" in out, out
    broker = redis.Redis.from_url(PRIVATE_BROKER)
    broker.set(WATCHING_KEY, time.time() - 3600)
    out = manage("alerts", "check")
    assert "3 threshold alert(s)" in out, out
    titles = sorted(text.split("\n")[0] for text in sink.texts()
                    if not text.startswith("*Repeats"))
    assert [title.split(":")[0] for title in titles] == [
        "*Beat is silent", "*Outbox", "*Pool bulk", "*Pool critical", "*Queue critical"]
    assert "no live worker" in titles[3]
    assert "waited 36" in next(text for text in sink.texts() if text.startswith("*Queue"))

    # Still crossed at the next check: counted in the window, not sent again.
    sink.posts.clear()
    manage("alerts", "check")
    assert sorted(text.split("\n")[0] for text in sink.texts()) == [
        f"*Repeats: {title[1:]}" for title in titles]

    # A live worker consuming bulk: its pool no longer alerts, and with no beat running
    # the worker's own periodic check reports beat's silence.
    broker.delete(WINDOWS_KEY)
    sink.posts.clear()
    celery_process("worker", "-Q", "bulk", WORKER_HEARTBEAT_INTERVAL="0.5",
                   ALERTS_CHECK_INTERVAL="0.5", **env)
    wait_for(lambda: any(text.startswith("*Beat is silent") for text in sink.texts()),
             what="the worker's check to report beat's silence")
    assert broker.hexists(WORKERS_KEY, "private-0@test")
    titles = [text.split("\n")[0] for text in sink.texts()]
    assert not any(title.startswith("*Pool bulk") for title in titles), titles


@pytest.mark.django_db
def test_a_failed_delivery_is_retried_and_each_channel_gets_it_once(settings):
    sink = WebhookSink(failures=1)
    settings.ALERTS_SLACK_WEBHOOK_URL = sink.url
    settings.ALERTS_EMAIL_TO = ["ops@example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    try:
        alert = alert_raise(kind=Alert.Kind.THRESHOLD, key=f"retry:{time.time()}",
                            title="Disk full", text="on db-1", deliver_now=True)
        assert alert is not None
        alert.refresh_from_db()
        assert alert.delivered_at is None
        assert alert.status == Alert.Status.PENDING
        assert alert.attempts == 1
        assert "webhook" in alert.last_error
        assert alert.next_attempt_at > timezone.now()
        assert alert.delivered_to == ["email"]  # the channel that worked is not repeated
        assert alert_deliver(alert_id=alert.pk)
        alert.refresh_from_db()
        assert alert.delivered_at is not None
        assert alert.status == Alert.Status.DELIVERED
        assert len(mail.outbox) == 1
        assert mail.outbox[0].subject == "[alert] Disk full"
        assert sink.texts() == ["*Disk full*\non db-1"]
    finally:
        sink.shutdown()


@pytest.mark.django_db
def test_an_alert_with_no_channel_is_marked_not_sent_and_never_retried(settings, admin_client):
    settings.ALERTS_SLACK_WEBHOOK_URL = ""
    settings.ALERTS_EMAIL_TO = []
    alert = alert_raise(kind=Alert.Kind.THRESHOLD, key=f"no-channel:{time.time()}",
                        title="Disk full", text="on db-1", deliver_now=True)
    assert alert is not None
    alert.refresh_from_db()
    assert alert.status == Alert.Status.NO_CHANNEL
    assert alert.delivered_at is None
    assert alert.delivered_to == []
    assert not alert_deliver(alert_id=alert.pk)
    assert alerts_deliver_pending(now=timezone.now() + timedelta(days=1)) == 0

    page = admin_client.get("/admin/workers/alert/").content.decode()
    assert "Not sent: no channel" in page
    filtered = admin_client.get("/admin/workers/alert/", {"status__exact": "no_channel"})
    assert filtered.context["cl"].result_count == 1


@pytest.mark.django_db(transaction=True)
def test_the_admin_link_of_an_alert_filters_to_its_fingerprint(admin_client):
    shown = DeadLetterFactory(message="order 1 failed")
    DeadLetterFactory(message="order 2 failed")
    other = DeadLetterFactory(message="timeout")
    response = admin_client.get("/admin/workers/deadletter/",
                                {"fingerprint": shown.fingerprint, "status__exact": "new"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 2
    assert other.task_id not in response.content.decode()


@pytest.mark.django_db
def test_failures_the_database_refused_from_the_spool_raise_an_alert(settings):
    settings.ALERTS_SLACK_WEBHOOK_URL = ""
    redis_client().delete(WINDOWS_KEY, REPEATS_KEY)  # an earlier test's window stays open
    dead_letter_spool_set_aside(entry='{"task_id": "x"}', error="value too long")
    try:
        alerts_check_thresholds(now=timezone.now())
    finally:
        redis_client().delete(SET_ASIDE_KEY)
    alert = Alert.objects.get(key="dead-letter-spool-set-aside")
    assert "1 failure(s)" in alert.text
