"""When messages entered each queue, counted in 10-second buckets: the age of a RabbitMQ
queue's oldest waiting message.

RabbitMQ tells how many messages a queue holds but not when the first of them came: the
head cannot be read without taking it (a quorum queue counts that as a delivery) and
`head_message_timestamp` exists for classic queues only. A queue is first in, first out,
so its W waiting messages are the last W that entered it: walking these counts back from
now to the W-th arrival gives the oldest one's time, to a bucket.

Every publishing process counts its sends in the batch its metrics flush sends
(workers/runtime/metric_store.py), so publishing costs no round trip; a message with a
countdown is counted when its delay ends and it enters the queue. The figure is an
estimate: a message handed back to the head (a lost worker's) or published by a process
that does not count (one killed within a flush interval of its send) makes it older than
the truth, never younger, which errs towards alerting. On Redis the broker's own list is
read instead (workers/core/queue_stats.py).

One hash per queue and hour (360 fields at most), kept KEPT_HOURS; past that the age is
the oldest bucket still kept, a lower bound.
"""

from redis.client import Pipeline

from workers.core.platform_redis import redis_client

KEY = "workers:arrivals:{queue}:{hour}"
BUCKET_SECONDS = 10
KEPT_HOURS = 24
FIRST_READ_HOURS = 2  # one round trip answers any backlog younger than an hour or so

Arrivals = dict[tuple[str, int], int]  # (queue, bucket) -> messages that entered it


def arrival_bucket(at: float) -> int:
    return int(at) // BUCKET_SECONDS


def arrivals_write(pipe: Pipeline, arrivals: Arrivals) -> None:
    """Queue on `pipe` the counts of one flush."""
    for (queue, bucket), amount in arrivals.items():
        key = _key(queue, bucket * BUCKET_SECONDS // 3600)
        pipe.hincrby(key, str(bucket), amount)
        pipe.expire(key, (KEPT_HOURS + 1) * 3600)


def oldest_arrival_age(*, queue: str, waiting: int, now: float) -> float | None:
    """Seconds since the oldest of the `waiting` newest arrivals at `queue` came (to a
    bucket); None if it holds nothing or no arrival was counted."""
    if waiting <= 0:
        return None
    hour = int(now) // 3600
    counts: dict[int, int] = {}
    for hours in (range(FIRST_READ_HOURS), range(FIRST_READ_HOURS, KEPT_HOURS)):
        pipe = redis_client().pipeline(transaction=False)
        for back in hours:
            pipe.hgetall(_key(queue, hour - back))
        for fields in pipe.execute():
            counts.update({int(bucket): int(amount) for bucket, amount in fields.items()
                           if int(bucket) <= arrival_bucket(now)})  # not a delay to come
        oldest = oldest_bucket(counts, waiting=waiting)
        if oldest is not None:
            return max(0.0, now - oldest * BUCKET_SECONDS)
    return max(0.0, now - min(counts) * BUCKET_SECONDS) if counts else None


def oldest_bucket(counts: dict[int, int], *, waiting: int) -> int | None:
    """The bucket holding the `waiting`-th newest arrival; None if fewer arrived."""
    total = 0
    for bucket in sorted(counts, reverse=True):
        total += counts[bucket]
        if total >= waiting:
            return bucket
    return None


def _key(queue: str, hour: int) -> str:
    return KEY.format(queue=queue, hour=hour)
