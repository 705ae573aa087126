"""The platform's Redis, for locks, counters, limits and records: the broker's own when the
broker is Redis, a Redis of its own (REDIS_URL) when the broker is RabbitMQ."""

from functools import cache
from typing import Any

import redis
from django.conf import settings

from workers.core.redis_urls import redis_from_url


@cache
def redis_client() -> redis.Redis:
    """One connection pool per process (redis-py re-creates it after a fork)."""
    return redis_from_url(settings.REDIS_URL, socket_connect_timeout=5,
                          master_name=settings.REDIS_SENTINEL_MASTER,
                          sentinel_password=settings.REDIS_SENTINEL_PASSWORD)


def redis_text(value: Any) -> str:
    """A reply of this client as text: it does not decode replies."""
    return value.decode() if isinstance(value, bytes) else str(value)
