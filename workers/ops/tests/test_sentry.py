"""What reaches Sentry from a real worker and beat, captured by a local stand-in."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.fixtures import PRIVATE_BROKER, publish_task, wait_for
from tests.sentry_server import SentryStandIn
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
