"""Task events as a monitor (Flower) receives them from real workers."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings

from config.celery import app
from tests.faults.brokers import rabbitmqctl, vhost_of
from tests.fixtures import HANG, wait_for


@contextmanager
def task_events(test_redis: redis.Redis, *, task_id: str, last: str) -> Iterator[list[dict]]:
    """The events of task `task_id`, in a list that fills while the block runs (send the
    task inside it); on leaving, wait until the event of type `last` arrived.

    The receiver is subscribed before the block starts: the broker drops events sent
    before it subscribed (Redis fan-out) or before its queue was bound (RabbitMQ)."""
    events: list[dict] = []

    def on_event(event: dict) -> None:
        if event.get("uuid") == task_id:
            events.append(event)
            receiver.should_stop = event["type"] == last

    patterns_before = test_redis.execute_command("PUBSUB", "NUMPAT")
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": on_event})
        listener = threading.Thread(target=lambda: receiver.capture(
            limit=None, timeout=HANG, wakeup=False), daemon=True)
        listener.start()
        wait_for(lambda: _receiving(receiver, test_redis, patterns_before),
                 what="the event receiver to subscribe")
        yield events
        listener.join(timeout=HANG)


def _receiving(receiver: object, test_redis: redis.Redis, patterns_before: int) -> bool:
    if not settings.BROKER_IS_RABBITMQ:
        return test_redis.execute_command("PUBSUB", "NUMPAT") > patterns_before
    # A consumer on its queue means the queue is declared and bound (the queue is
    # exclusive to the receiver's connection: only the broker's own tool sees it).
    consumers = rabbitmqctl(settings.CELERY_BROKER_URL, "list_consumers", "-p",
                            vhost_of(settings.CELERY_BROKER_URL), "queue_name")
    return receiver.queue.name in consumers.split()  # type: ignore[attr-defined]
