"""The platform's Redis, for locks, counters, limits and records: the broker's own when the
broker is Redis, a Redis of its own (REDIS_URL) when the broker is RabbitMQ."""

from functools import cache
from typing import Any

import redis
from django.conf import settings

from workers.core.redis_urls import redis_from_url


@cache
def redis_client() -> redis.Redis:
    """One connection pool per process (redis-py re-creates it after a fork).

    Text is written with `surrogatepass`: a task id is whatever its producer wrote, and a
    lone surrogate (JSON's "\\ud800") in one made every key built from it raise instead
    (the attempts' errors, the retry and dedup records of that job were lost, each with a
    failed signal handler in the log). Redis keys are bytes; the same text is the same key.
    """
    return redis_from_url(settings.REDIS_URL, socket_connect_timeout=5,
                          master_name=settings.REDIS_SENTINEL_MASTER,
                          sentinel_password=settings.REDIS_SENTINEL_PASSWORD,
                          encoding_errors="surrogatepass")


def redis_text(value: Any) -> str:
    """A reply of this client as text (it does not decode replies), read back as it was
    written (`surrogatepass`, above)."""
    return value.decode(errors="surrogatepass") if isinstance(value, bytes) else str(value)
