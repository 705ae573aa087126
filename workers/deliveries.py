"""Counts how often a message came back, so a task that kills its worker cannot loop.

Late acks plus re-queue on worker loss mean a task that crashes its process is delivered
again, and again. The broker keeps no delivery count for Redis, so we keep one: a Redis
counter per task id and retry number, touched only on redelivery (never on the happy path).
"""

from functools import cache

import redis
from django.conf import settings


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=5)


def redelivery_count(*, task_id: str, retries: int) -> int:
    """Record one more redelivery of this attempt and return how many there were."""
    key = f"workers:redeliveries:{task_id}:{retries}"
    pipe = _client().pipeline()
    pipe.incr(key)
    # Outlive the slowest redelivery path (the visibility timeout) for every allowed one.
    pipe.expire(key, settings.BROKER_VISIBILITY_TIMEOUT * (settings.TASK_MAX_DELIVERIES + 1))
    count, _ = pipe.execute()
    return int(count)
