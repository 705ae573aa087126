"""The per-minute task history in Redis: its records, and its agreement with /metrics."""

import time

from celery.utils import uuid

from tests import tasks
from tests.fixtures import wait_for
from workers.core.platform_redis import redis_client
from workers.runtime.metric_store import parse_field, read_hosts
from workers.runtime.task_history import (
    DAY_BYTES,
    KEY,
    RUNTIME_BUCKETS,
    history_hours,
    history_minutes,
    history_series,
    history_write,
    runtime_percentile,
    slot_of,
)

MIDNIGHT = 1_798_761_600  # 2027-01-01 00:00 UTC


def write(queue: str, task: str, slots: dict[int, int], *, at: float) -> None:
    pipe = redis_client().pipeline(transaction=False)
    history_write(pipe, {(queue, task): slots}, now=at)
    pipe.execute()


def test_minutes_read_back_across_midnight_with_silent_minutes_as_zeros(test_redis):
    task = f"history.{uuid()}"
    write("bulk", task, {slot_of("started"): 3, slot_of("succeeded"): 2,
                         slot_of("runtime", 4): 2}, at=MIDNIGHT - 30)
    write("bulk", task, {slot_of("failed"): 1, slot_of("retried"): 5}, at=MIDNIGHT + 70)

    minutes = history_minutes(queue="bulk", task=task, since=MIDNIGHT - 120,
                              until=MIDNIGHT + 119)

    assert [m.at for m in minutes] == [MIDNIGHT + 60 * n for n in range(-2, 2)]
    assert [(m.started, m.succeeded, m.failed, m.retried) for m in minutes] == [
        (0, 0, 0, 0), (3, 2, 0, 0), (0, 0, 0, 0), (0, 0, 1, 5)]
    assert runtime_percentile(minutes[1].runtime_buckets, 0.99) == RUNTIME_BUCKETS[4]
    assert runtime_percentile(minutes[0].runtime_buckets, 0.5) is None


def test_a_day_key_is_bounded_and_expires_with_its_window(test_redis):
    task = f"history.{uuid()}"
    last_bucket = slot_of("runtime", len(RUNTIME_BUCKETS) - 1)  # the last byte of a day
    write("critical", task, {slot_of("started"): 1, last_bucket: 1}, at=MIDNIGHT + 86399)
    key = KEY.format(day="20270101", queue="critical", task=task)

    hours = KEY.replace("history:", "history:hours:").format(day="20270101", queue="critical",
                                                             task=task)
    assert redis_client().strlen(key) + redis_client().strlen(hours) == DAY_BYTES
    ends = MIDNIGHT + 86400 + 72 * 3600
    assert redis_client().expiretime(key) == ends


def test_hours_add_up_their_minutes_for_a_72_hour_chart(test_redis):
    task = f"history.{uuid()}"
    for minute in (0, 30, 59, 60):
        write("bulk", task, {slot_of("started"): 1}, at=MIDNIGHT + minute * 60)

    hours = history_hours(queue="bulk", task=task, since=MIDNIGHT - 3600,
                          until=MIDNIGHT + 3600)

    assert [(h.at, h.started) for h in hours] == [
        (MIDNIGHT - 3600, 0), (MIDNIGHT, 3), (MIDNIGHT + 3600, 1)]


def test_a_runtime_bucket_saturates_instead_of_wrapping(test_redis):
    task = f"history.{uuid()}"
    for _ in range(2):
        write("bulk", task, {slot_of("runtime", 0): 60_000}, at=MIDNIGHT)
    [minute] = history_minutes(queue="bulk", task=task, since=MIDNIGHT, until=MIDNIGHT)
    assert minute.runtime_buckets[0] == 65_535


def test_series_name_each_task_that_ran_and_forget_old_ones(test_redis):
    task = f"history.{uuid()}"
    write("bulk", task, {slot_of("started"): 1}, at=time.time())
    assert ("bulk", task) in history_series(now=time.time())
    assert ("bulk", task) not in history_series(now=time.time() + 73 * 3600)


def test_a_live_worker_writes_the_same_counts_as_metrics(live_workers, test_redis):
    """Every figure the history holds is the one /metrics exposes under the same name."""
    name = "tests.tasks.log_line"
    since = time.time() - 60

    def totals() -> tuple[dict[str, float], dict[str, int]]:
        exposed = {"started": 0.0, "succeeded": 0.0}
        for series in read_hosts().values():
            for raw, amount in series.items():
                family, labels = parse_field(raw)
                counter = family.removeprefix("celery_task_")
                if counter in exposed and labels[:2] == [name, "critical"]:
                    exposed[counter] += amount
        minutes = history_minutes(queue="critical", task=name, since=since,
                                  until=time.time())
        kept = {"started": sum(m.started for m in minutes),
                "succeeded": sum(m.succeeded for m in minutes)}
        return exposed, kept

    before_exposed, before_kept = totals()
    for n in range(5):
        tasks.log_line.apply_async(args=[f"history-{n}"], queue="critical")

    def settled() -> tuple[dict[str, float], dict[str, int]] | None:
        exposed, kept = totals()
        done = all(exposed[c] - before_exposed[c] == 5 and kept[c] - before_kept[c] == 5
                   for c in exposed)
        return (exposed, kept) if done else None

    wait_for(settled, what="the five runs in /metrics and in the history")
