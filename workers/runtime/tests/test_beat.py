"""The locked beat scheduler in-process: one send per slot, on takeover and after it."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery.signals import before_task_publish
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask, SolarSchedule

from config.celery import app
from workers.runtime.beat import BEAT_LOCK_KEY, LockedDatabaseScheduler

ENTRY = "slot-test"


@pytest.fixture
def due_entry(transactional_db, test_redis) -> PeriodicTask:
    test_redis.delete(BEAT_LOCK_KEY)
    every_minute = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(
        name=ENTRY, task="tests.tasks.beat_tick", interval=every_minute, queue="bulk",
        last_run_at=timezone.now() - timedelta(minutes=5))


@pytest.fixture
def sends() -> Iterator[list[str]]:
    """Task ids of every publish of the test entry from this process."""
    sent: list[str] = []

    def count(headers=None, **_):
        if (headers or {}).get("periodic_task_name") == ENTRY:
            sent.append(headers["id"])

    before_task_publish.connect(count, weak=False)
    try:
        yield sent
    finally:
        before_task_publish.disconnect(count)


def ticks(scheduler: LockedDatabaseScheduler, count: int = 10) -> None:
    for _ in range(count):
        scheduler.tick()


def test_taking_the_lock_sends_a_due_entry_once(due_entry, sends, caplog):
    scheduler = LockedDatabaseScheduler(app=app)
    ticks(scheduler)
    scheduler.close()

    assert len(sends) == 1
    assert "already sent" not in caplog.text  # once by the scheduler itself, not by the claim


def test_a_standby_skips_the_slot_a_dead_holder_sent_but_did_not_record(due_entry, sends,
                                                                          test_redis, caplog):
    holder = LockedDatabaseScheduler(app=app)
    ticks(holder)
    assert len(sends) == 1
    # The holder dies here: its send never reached the database, and its lock expires.
    PeriodicTask.objects.filter(pk=due_entry.pk).update(last_run_at=due_entry.last_run_at)
    test_redis.delete(BEAT_LOCK_KEY)

    standby = LockedDatabaseScheduler(app=app)
    ticks(standby)
    standby.close()

    assert len(sends) == 1
    assert f"{ENTRY} after" in caplog.text
    assert "already sent" in caplog.text
    # The standby advanced the entry past the slot, so the next one is sent on time.
    assert PeriodicTask.objects.get(pk=due_entry.pk).last_run_at > due_entry.last_run_at


def test_an_entry_beat_cannot_compute_is_skipped_and_the_others_still_run(due_entry, sends,
                                                                          caplog):
    """A solar schedule needs the `ephem` library, which the template does not ship."""
    sunrise = SolarSchedule.objects.create(event="sunrise", latitude=48.85, longitude=2.35)
    PeriodicTask.objects.create(name="at-sunrise", task="tests.tasks.beat_tick", solar=sunrise)

    scheduler = LockedDatabaseScheduler(app=app)
    ticks(scheduler)
    scheduler.close()

    assert len(sends) == 1  # the due entry, sent as ever
    assert "entry 'at-sunrise' skipped, its schedule cannot be computed" in caplog.text
