"""A quick "does the broker answer", for the outbox's choice between publishing now and
leaving the job to the sweeper."""

from functools import cache

import redis
from django.conf import settings
from kombu import Connection
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry


@cache
def _probe_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2,
                                socket_timeout=2, retry=Retry(NoBackoff(), 0))


def broker_reachable() -> bool:
    """One quick try, no retries: callers that have a fallback should not wait seconds."""
    if settings.BROKER_IS_RABBITMQ:
        try:
            with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=0)  # one attempt, no wait
        except Exception:  # kombu raises the socket's error or its own OperationalError
            return False
        return True
    try:
        return bool(_probe_client().ping())
    except RedisError:
        return False
