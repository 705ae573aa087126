"""Publishing many task messages in one go: the outbox's batches and dead-letter requeues.

The messages are Celery's own: callers go on calling `send_task(..., producer=producer)`
with the producer given here, so each message is built, stamped, redacted and routed as
any other (workers/runtime/task_messages.py, the `before_task_publish` handlers). Only
the sending is grouped:

- On Redis, kombu's publish batch queues the LPUSHes on one pipeline, sent every
  BATCH_COMMANDS commands and when the block ends: one round trip instead of one per
  message.
- On RabbitMQ, the messages go out on a channel of their own in confirm mode without
  waiting for each confirm (which is what the app's `confirm_publish` does per message);
  the block ends once the broker has confirmed every one of them.

Either way a message counts as sent only when the block has ended without an error. An
error means some of the batch may have reached the broker: a caller that sends them
again sends those twice, which the platform allows (its tasks are effect-once or
idempotent), never none. The py-amqp names used here are checked by
workers/runtime/tests/test_celery_internals.py.
"""

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from kombu import Producer
from kombu.exceptions import BatchPublishError, OperationalError

#: Redis commands queued before the pipeline is sent (one LPUSH a message).
BATCH_COMMANDS = 1000
#: Seconds to wait for RabbitMQ to confirm the messages of a batch.
CONFIRM_TIMEOUT = 30.0


@contextmanager
def batch_publishing(*, app: Celery) -> Iterator[Producer]:
    """A producer whose publishes are sent together when the block ends; raises kombu's
    OperationalError if the broker may not hold them all."""
    with app.producer_or_acquire() as producer:
        channel = producer.channel  # the producer's own answer reads the transport's
        if getattr(channel, "supports_batch_publish", False):
            try:
                with producer.batch(max_size=BATCH_COMMANDS):
                    yield producer
            except BatchPublishError as error:  # what callers already handle for a publish
                raise OperationalError(str(error)) from error
        elif producer.connection.transport.driver_type == "amqp":  # py-amqp, RabbitMQ
            with _confirmed_together(producer) as batch_producer:
                yield batch_producer
        else:  # a transport with neither: one by one, as send_task does
            yield producer


@contextmanager
def _confirmed_together(producer: Producer) -> Iterator[Producer]:
    """A producer on a new confirm-mode channel that does not wait for each confirm."""
    connection: Any = producer.connection
    channel: Any = connection.channel()
    try:
        channel.confirm_select()
        confirms: list[tuple[int, bool]] = []  # (delivery tag, multiple)
        refused: list[int] = []
        channel.events["basic_ack"].add(lambda tag, multiple: confirms.append((tag, multiple)))
        channel.events["basic_nack"].add(lambda tag, multiple: refused.append(tag))
        publish = channel._basic_publish  # the channel's own publish, which does not wait
        sent = [0]

        def counted(*args: Any, **kwargs: Any) -> Any:
            sent[0] += 1  # a channel's delivery tags number its publishes from 1
            return publish(*args, **kwargs)

        channel.basic_publish = counted
        yield Producer(channel, serializer=producer.serializer,
                       compression=producer.compression, auto_declare=False)
        waiting = set(range(1, sent[0] + 1))
        try:
            while True:
                for tag, multiple in confirms:
                    waiting = {t for t in waiting if t > tag} if multiple else waiting - {tag}
                confirms.clear()
                if refused or not waiting:
                    break
                channel.connection.drain_events(timeout=CONFIRM_TIMEOUT)
        except (*connection.connection_errors, *connection.channel_errors,
                TimeoutError) as error:  # a socket's timeout is a TimeoutError
            raise OperationalError(f"RabbitMQ did not confirm a batch: {error!r}") from error
        if refused:
            raise OperationalError(f"RabbitMQ refused {len(refused)} message(s) of a batch")
    finally:
        with contextlib.suppress(*connection.connection_errors):
            channel.close()  # a connection that is gone: the error raised says so
