"""Counts how often a message came back, so a task that kills its worker cannot loop.

Late acks plus re-queue on worker loss mean a task that crashes its process is delivered
again, and again. The broker keeps no delivery count for Redis, so we keep one: a Redis
counter per task id and retry number, touched only on redelivery (never on the happy path).
"""

from django.conf import settings

from workers.api.broker import redis_client


def redelivery_count(*, task_id: str, retries: int) -> int:
    """Record one more redelivery of this attempt and return how many there were."""
    key = f"workers:redeliveries:{task_id}:{retries}"
    pipe = redis_client().pipeline()
    pipe.incr(key)
    # Outlive the slowest redelivery path (the visibility timeout) for every allowed one.
    pipe.expire(key, settings.BROKER_VISIBILITY_TIMEOUT * (settings.TASK_MAX_DELIVERIES + 1))
    count, _ = pipe.execute()
    return int(count)
