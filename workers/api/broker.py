"""The broker's Redis, for the platform's own counters and limits."""

from functools import cache

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry


@cache
def redis_client() -> redis.Redis:
    """One connection pool per process (redis-py re-creates it after a fork)."""
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=5)


@cache
def _probe_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2,
                                socket_timeout=2, retry=Retry(NoBackoff(), 0))


def broker_reachable() -> bool:
    """One quick ping, no retries: callers that have a fallback should not wait seconds."""
    try:
        return bool(_probe_client().ping())
    except RedisError:
        return False
