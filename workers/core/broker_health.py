"""A quick "does the broker answer", for the outbox's choice between publishing now and
leaving the job to the sweeper, and for `/readyz` and `check_services`
(workers/ops/health.py)."""

from functools import cache

import redis
from django.conf import settings
from kombu import Connection
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from workers.core.redis_urls import redis_from_url


@cache
def _probe_client() -> redis.Redis:
    return redis_from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2,
                          socket_timeout=2, retry=Retry(NoBackoff(), 0),
                          master_name=settings.REDIS_SENTINEL_MASTER,
                          sentinel_password=settings.REDIS_SENTINEL_PASSWORD)


def broker_reachable() -> bool:
    """One quick try, no retries: callers that have a fallback should not wait seconds."""
    if settings.BROKER_IS_RABBITMQ:
        return rabbitmq_error() is None
    return redis_broker_error() is None


def redis_broker_error() -> Exception | None:
    """None if the Redis broker (the primary its Sentinels name) answers a ping, tried
    once with 2 s timeouts; else the error. kombu's own connection retries each Sentinel
    with backoff: a refused Sentinel password took `check_services` 28 s to report."""
    try:
        _probe_client().ping()
    except RedisError as exc:
        return exc
    return None


def rabbitmq_error() -> Exception | None:
    """None if a node of the broker URL's list (amqp://h1;amqp://h2) takes a connection,
    each tried once: the first may be down while the cluster serves
    (tests/faults/test_rabbitmq_cluster.py). Else the last node's error."""
    error: Exception | None = None
    for url in settings.CELERY_BROKER_URL.split(";"):
        try:
            with Connection(url, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=0)  # one attempt, no wait
        except Exception as exc:  # kombu raises the socket's error or its own
            error = exc
        else:
            return None
    return error
