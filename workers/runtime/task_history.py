"""Per-minute history of every task, kept HISTORY_HOURS in the platform's Redis, so an
operator sees the last hours without Prometheus.

Two Redis strings per queue, task and UTC day: one of minutes, one of hours (what a
72-hour chart reads, 60 times less). Record (or hour) n of the day is a fixed-width record
at byte n * RECORD_BYTES: started, succeeded, failed and retried (u32 each) and the
runtime histogram's buckets (RUNTIME_BUCKETS, u16 each, saturating). The metrics flush
writes both (BITFIELD INCRBY) in the round trip it already makes, so no task pays a
network call; increments land in the minute of the flush, at most METRICS_FLUSH_INTERVAL
late. Redis zero-fills a string up to the last byte written, so a task name costs at most
DAY_BYTES (74,880 + 1,248) a day, and a key expires HISTORY_HOURS after its day ends.
"""

import struct
import time
from dataclasses import dataclass

from redis.client import Pipeline

from workers.core.platform_redis import redis_client, redis_text

HISTORY_HOURS = 72
SERIES_KEY = "workers:history:series"  # "queue task" -> last write (Unix time)
KEY = "workers:history:{day}:{queue}:{task}"  # minutes
HOURS_KEY = "workers:history:hours:{day}:{queue}:{task}"
COUNTERS = ("started", "succeeded", "failed", "retried")
# The runtime histogram's upper bounds (seconds), as /metrics has them.
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                   7.5, 10.0, 30.0, 60.0, 300.0, float("inf"))
RECORD = struct.Struct(f">{len(COUNTERS)}I{len(RUNTIME_BUCKETS)}H")  # BITFIELD is big-endian
RECORD_BYTES = RECORD.size
DAY_BYTES = (1440 + 24) * RECORD_BYTES
SERIES_SEPARATOR = " "  # neither a queue name nor a task name holds a space


@dataclass(frozen=True)
class Record:
    """One minute or one hour of a task on a queue."""

    at: int  # Unix time of its start
    started: int
    succeeded: int
    failed: int
    retried: int
    runtime_buckets: tuple[int, ...]


def slot_of(family: str, bucket: int = 0) -> int:
    """The record's field an increment goes to: a counter, or a runtime bucket."""
    return COUNTERS.index(family) if family in COUNTERS else len(COUNTERS) + bucket


def history_write(pipe: Pipeline, increments: dict[tuple[str, str], dict[int, int]], *,
                  now: float) -> None:
    """Queue on `pipe` the increments of one flush: (queue, task) -> {slot: amount}."""
    day, minute = divmod(int(now) // 60, 1440)
    expires = (day + 1) * 86400 + HISTORY_HOURS * 3600
    for (queue, task), slots in increments.items():
        for key, record in ((_key(KEY, day, queue, task), minute),
                            (_key(HOURS_KEY, day, queue, task), minute // 60)):
            command: list[object] = ["BITFIELD", key, "OVERFLOW", "SAT"]
            for slot, amount in sorted(slots.items()):
                kind, offset = _field(slot)
                command += ["INCRBY", kind, record * RECORD_BYTES * 8 + offset, amount]
            pipe.execute_command(*command)
            pipe.expireat(key, expires)
        pipe.zadd(SERIES_KEY, {f"{queue}{SERIES_SEPARATOR}{task}": now})


def history_series(*, now: float) -> list[tuple[str, str]]:
    """(queue, task) of every task that ran within HISTORY_HOURS; forgets the others."""
    client = redis_client()
    client.zremrangebyscore(SERIES_KEY, "-inf", now - HISTORY_HOURS * 3600)
    members = (redis_text(raw).partition(SERIES_SEPARATOR)
               for raw in client.zrange(SERIES_KEY, 0, -1))
    return sorted((queue, task) for queue, _, task in members)


def history_minutes(*, queue: str, task: str, since: float, until: float) -> list[Record]:
    """Every minute from `since` to `until` (a minute nobody ran reads as zeros)."""
    return _read(KEY, 60, queue=queue, task=task, since=since, until=until)


def history_hours(*, queue: str, task: str, since: float, until: float) -> list[Record]:
    """Every hour from `since` to `until`, each as one record of the same fields."""
    return _read(HOURS_KEY, 3600, queue=queue, task=task, since=since, until=until)


def _read(key: str, unit: int, *, queue: str, task: str, since: float,
          until: float) -> list[Record]:
    per_day = 86400 // unit
    first, last = int(since) // unit, int(until) // unit
    pipe = redis_client().pipeline(transaction=False)
    days = range(first // per_day, last // per_day + 1)
    for day in days:
        start = max(first, day * per_day) - day * per_day
        end = min(last, day * per_day + per_day - 1) - day * per_day
        pipe.getrange(_key(key, day, queue, task), start * RECORD_BYTES,
                      (end + 1) * RECORD_BYTES - 1)
    records = []
    for day, raw in zip(days, pipe.execute(), strict=True):
        start = max(first, day * per_day)
        end = min(last, day * per_day + per_day - 1)
        data = bytes(raw).ljust((end - start + 1) * RECORD_BYTES, b"\0")
        for index, values in enumerate(RECORD.iter_unpack(data)):
            started, succeeded, failed, retried = values[:len(COUNTERS)]
            records.append(Record(at=(start + index) * unit, started=started,
                                  succeeded=succeeded, failed=failed, retried=retried,
                                  runtime_buckets=values[len(COUNTERS):]))
    return records


def runtime_percentile(buckets: tuple[int, ...] | list[int], quantile: float) -> float | None:
    """The upper bound of the bucket holding the quantile (None without a run), as
    Prometheus' histogram_quantile reads the same buckets at their edges."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen = quantile * total, 0
    for bound, count in zip(RUNTIME_BUCKETS, buckets, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return RUNTIME_BUCKETS[-1]


def _key(key: str, day: int, queue: str, task: str) -> str:
    return key.format(day=time.strftime("%Y%m%d", time.gmtime(day * 86400)), queue=queue,
                      task=task)


def _field(slot: int) -> tuple[str, int]:
    """BITFIELD type and bit offset of a slot within its record."""
    if slot < len(COUNTERS):
        return "u32", 32 * slot
    return "u16", 32 * len(COUNTERS) + 16 * (slot - len(COUNTERS))
