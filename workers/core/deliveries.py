"""Counts how often a message came back, so a task that kills its worker cannot loop.

Late acks plus re-queue on worker loss mean a task that crashes its process is delivered
again, and again. RabbitMQ's quorum queues count deliveries themselves (the
`x-delivery-count` header, and their delivery limit as a backstop); Redis keeps no count,
so we keep one there: a Redis counter per task id and retry number, touched only on
redelivery (never on the happy path).
"""

from typing import Any

from django.conf import settings

from workers.core.platform_redis import redis_client

#: Set by a RabbitMQ quorum queue on a message it delivers again: earlier deliveries.
DELIVERY_COUNT_HEADER = "x-delivery-count"


def redelivery_count(*, task_id: str, retries: int, headers: Any) -> int:
    """How many times this attempt was delivered before, counting this redelivery."""
    counted = headers.get(DELIVERY_COUNT_HEADER)
    if counted is not None:
        return int(counted)
    key = f"workers:redeliveries:{task_id}:{retries}"
    pipe = redis_client().pipeline()
    pipe.incr(key)
    # Outlive the slowest redelivery path (the visibility timeout) for every allowed one.
    pipe.expire(key, settings.BROKER_VISIBILITY_TIMEOUT * (settings.TASK_MAX_DELIVERIES + 1))
    count, _ = pipe.execute()
    return int(count)
