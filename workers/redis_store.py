"""The broker's Redis, for the platform's own counters and limits."""

from functools import cache

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    """One connection pool per process (redis-py re-creates it after a fork)."""
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=5)
