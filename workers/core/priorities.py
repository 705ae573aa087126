"""Django's task priorities (-100 to 100, higher first, 0 the default) as the Celery
message priorities each broker of the template honours.

Both brokers here read a higher Celery priority as more urgent: RabbitMQ by design, Redis
through the template's transport (workers/runtime/redis_transport.py), which fetches
kombu's priority steps (0, 3, 6, 9) from the highest down. A message without a priority is
ordinary work and goes after every message with one, so Django's default (0) and anything
below it travel without one: neither broker has a level under ordinary work.

- Redis: three levels above ordinary work, 1-33 → 3, 34-66 → 6, 67-100 → 9; within a
  level, first in first out.
- RabbitMQ: from RabbitMQ 4.0, quorum queues have two levels, and a message whose
  priority is above 4 is delivered ahead of the others (two of them for one ordinary one
  while both wait); 1-100 → 5-9, which a classic queue declared with `x-max-priority`
  would also tell apart. Before 4.0 quorum queues have no priorities: the messages keep
  theirs and are delivered in order of arrival.
"""

import math

from django.conf import settings

#: The highest Celery priority either broker reads, and the lowest RabbitMQ's quorum
#: queues (4.0 and later) deliver ahead of ordinary messages.
HIGHEST = 9
RABBITMQ_HIGH = 5
REDIS_STEPS = (3, 6, 9)  # kombu's priority steps above the primary key's 0


def celery_priority(django_priority: int) -> int | None:
    """The Celery priority a job of this Django priority is published with (None for
    ordinary work)."""
    if django_priority <= 0:
        return None
    share = min(django_priority, 100) / 100  # in (0, 1]: each level below is in range
    if settings.BROKER_IS_RABBITMQ:
        return RABBITMQ_HIGH - 1 + math.ceil(share * (HIGHEST - RABBITMQ_HIGH + 1))
    return REDIS_STEPS[math.ceil(share * len(REDIS_STEPS)) - 1]
