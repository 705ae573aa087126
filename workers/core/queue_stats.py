"""Reads queue depth and the age of the oldest waiting message straight from the broker.

On Redis, kombu keeps each queue as a list per priority step (publish LPUSHes, consumers
pop from the right), so the oldest waiting message of a step is its list's last element;
every publish is stamped with its time. Ordinary work is on the queue's own key, a job
with a priority on `<queue><sep><step>`, kombu's naming.

On RabbitMQ a queue declaration returns the number of messages ready; the head cannot be
read without taking it (and a quorum queue would count that as a delivery), so the age is
estimated from when messages entered the queue (workers/core/arrivals.py).
"""

import json
import time
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from redis.exceptions import RedisError

from workers.core.arrivals import oldest_arrival_age
from workers.core.headers import ENQUEUED_AT_HEADER


@dataclass(frozen=True)
class QueueStats:
    name: str
    waiting: int
    oldest_age_seconds: float | None


def queue_stats(*, queues: tuple[str, ...], now: float | None = None) -> list[QueueStats]:
    """Depth and oldest-message age (at `now`, Unix time) of each queue, in one broker
    connection."""
    if settings.BROKER_IS_RABBITMQ:
        return _rabbitmq_stats(queues, now or time.time())
    with current_app.connection_for_read() as conn:
        channel: Any = conn.default_channel  # a kombu Redis channel
        keys = {name: [f"{name}{channel.sep}{step}" if step else name
                       for step in channel.priority_steps] for name in queues}
        pipe = channel.client.pipeline(transaction=False)
        for key in (key for name in queues for key in keys[name]):
            pipe.llen(key)
            pipe.lindex(key, -1)
        replies = iter(pipe.execute())
    at = now or time.time()
    stats = []
    for name in queues:
        lengths_and_tails = [(next(replies), next(replies)) for _ in keys[name]]
        ages = [age for _, tail in lengths_and_tails if (age := _oldest_age(tail, at)) is not None]
        stats.append(QueueStats(name, sum(int(length) for length, _ in lengths_and_tails),
                                max(ages, default=None)))
    return stats


def _oldest_age(raw: bytes | None, now: float) -> float | None:
    if raw is None:
        return None
    try:
        enqueued_at = json.loads(raw)["headers"][ENQUEUED_AT_HEADER]
    except (ValueError, KeyError, TypeError):
        return None  # published by something that does not stamp messages
    return max(0.0, now - float(enqueued_at))


def _rabbitmq_stats(queues: tuple[str, ...], now: float) -> list[QueueStats]:
    rows = []
    with current_app.connection_for_read() as conn:
        channel = conn.default_channel
        for name in queues:
            # Declared as the workers declare it: a queue no worker has created yet is
            # empty, not an error (a mismatched declaration is one, and says so).
            reply = current_app.amqp.queues[name].bind(channel).queue_declare()
            waiting = reply.message_count  # type: ignore[union-attr]  # amqp's queue_declare_ok_t
            rows.append(QueueStats(name, int(waiting), None))
    try:
        return [QueueStats(row.name, row.waiting, oldest_arrival_age(
            queue=row.name, waiting=row.waiting, now=now)) for row in rows]
    except RedisError:  # the depth still holds; the age is unknown while Redis is away
        return rows
