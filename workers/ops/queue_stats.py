"""Reads queue depth and the age of the oldest waiting message straight from Redis.

kombu keeps each queue as a Redis list (publish LPUSHes, consumers BRPOP), so the
oldest waiting message is the last element; every publish is stamped with its time.
The project publishes no message priorities, so each queue is exactly one list.
"""

import json
import time
from dataclasses import dataclass

from celery import current_app

from workers.api.headers import ENQUEUED_AT_HEADER


@dataclass(frozen=True)
class QueueStats:
    name: str
    waiting: int
    oldest_age_seconds: float | None


def queue_stats(*, queues: tuple[str, ...], now: float | None = None) -> list[QueueStats]:
    """Depth and oldest-message age (at `now`, Unix time) of each queue, in one broker
    connection."""
    with current_app.connection_for_read() as conn:
        client = conn.default_channel.client  # type: ignore[attr-defined]  # Redis channel
        pipe = client.pipeline(transaction=False)
        for name in queues:
            pipe.llen(name)
            pipe.lindex(name, -1)
        replies = pipe.execute()
    return [
        QueueStats(name, int(waiting), _oldest_age(oldest, now or time.time()))
        for name, waiting, oldest in zip(queues, replies[::2], replies[1::2], strict=True)
    ]


def _oldest_age(raw: bytes | None, now: float) -> float | None:
    if raw is None:
        return None
    try:
        enqueued_at = json.loads(raw)["headers"][ENQUEUED_AT_HEADER]
    except (ValueError, KeyError, TypeError):
        return None  # published by something that does not stamp messages
    return max(0.0, now - float(enqueued_at))
