"""RabbitMQ's dead-lettered messages become rows of the dead-letter table.

A quorum queue dead-letters a message once it was returned more often than its delivery
limit (workers.core.routing): a worker, channel or broker lost each time before the task
could record anything, so no failure path of ours saw it. Every worker consumes the
dead-letter queue beside its own and stores each message the way a poison message is
stored (its task, id and arguments kept, so it can be replayed), then acknowledges it.
A task whose own redelivery cap fired first was acknowledged then, so it never gets
here. Messages Celery rejected (poison messages, `Reject`) come here too, after their row
was written under the same task id: the row is kept once, and one that could not be
written then is written now.
"""

import logging
from typing import Any

from celery import bootsteps
from django.conf import settings
from kombu import Consumer

from workers.core.exceptions import RedeliveryLimitExceeded
from workers.core.routing import dead_letter_queue
from workers.runtime.consumer import dead_letter_raw_message

logger = logging.getLogger(__name__)


class BrokerDeadLetters(bootsteps.ConsumerStep):
    """Consumer step, on RabbitMQ only: consume DEAD_LETTER beside the task queues."""

    def include_if(self, consumer: Any) -> bool:
        return bool(settings.BROKER_IS_RABBITMQ)

    hostname = ""

    def get_consumers(self, channel: Any) -> list[Consumer]:
        # on_message: the raw message, never decoded here (no serializer is trusted).
        return [Consumer(channel, queues=[dead_letter_queue()], on_message=self.on_message,
                         no_ack=False, prefetch_count=10)]

    def start(self, consumer: Any) -> None:
        self.hostname = consumer.hostname
        super().start(consumer)

    def on_message(self, message: Any) -> None:
        death = _first_death(message.headers if isinstance(message.headers, dict) else {})
        try:
            dead_letter_raw_message(
                message, queue=str(death.get("queue") or ""),
                exception=RedeliveryLimitExceeded(
                    f"RabbitMQ dead-lettered it ({death.get('reason', 'unknown reason')}): "
                    f"delivered more than {settings.TASK_MAX_DELIVERIES} times, each lost "
                    "before the task could record a failure"),
                worker=self.hostname)
        except Exception:
            # Neither the database nor the Redis spool took it: leave it queued.
            logger.exception("could not store a dead-lettered message; it stays queued")
            message.requeue()
            return
        message.ack()


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
    """The `x-death` entry RabbitMQ added when it dead-lettered the message."""
    deaths = headers.get("x-death") or [{}]
    return deaths[0] if isinstance(deaths[0], dict) else {}

