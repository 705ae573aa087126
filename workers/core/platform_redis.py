"""The platform's Redis, for locks, counters, limits and records: the broker's own when the
broker is Redis, a Redis of its own (REDIS_URL) when the broker is RabbitMQ."""

from functools import cache
from typing import Any

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    """One connection pool per process (redis-py re-creates it after a fork)."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5)


def redis_text(value: Any) -> str:
    """A reply of this client as text: it does not decode replies."""
    return value.decode() if isinstance(value, bytes) else str(value)
