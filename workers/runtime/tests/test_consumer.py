"""The consumer publishes task events in batches, and monitors still see each one."""

import threading

from celery.utils import uuid
from django.conf import settings

from config.celery import app
from tests import tasks
from tests.faults.brokers import rabbitmqctl, vhost_of
from tests.fixtures import HANG, wait_for
from workers.api.routing import BULK


def receiving(receiver, test_redis, patterns_before: int) -> bool:
    if not settings.BROKER_IS_RABBITMQ:
        return test_redis.execute_command("PUBSUB", "NUMPAT") > patterns_before
    # A consumer on its queue means the queue is declared and bound (the queue is
    # exclusive to the receiver's connection: only the broker's own tool sees it).
    consumers = rabbitmqctl(settings.CELERY_BROKER_URL, "list_consumers", "-p",
                            vhost_of(settings.CELERY_BROKER_URL), "queue_name")
    return receiver.queue.name in consumers.split()


def test_task_events_still_reach_monitors_when_batched(live_workers, test_redis):
    task_id = uuid()
    seen: list[str] = []

    def on_event(event: dict) -> None:
        if event.get("uuid") == task_id:
            seen.append(event["type"])
            receiver.should_stop = event["type"] == "task-succeeded"

    patterns_before = test_redis.execute_command("PUBSUB", "NUMPAT")
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": on_event})
        listener = threading.Thread(target=lambda: receiver.capture(
            limit=None, timeout=HANG, wakeup=False), daemon=True)
        listener.start()
        # The broker drops events sent before the receiver subscribed (Redis fan-out) or
        # before its queue was bound (RabbitMQ).
        wait_for(lambda: receiving(receiver, test_redis, patterns_before),
                 what="the event receiver to subscribe")
        tasks.database_backend.apply_async(args=[task_id], queue=BULK, task_id=task_id)
        listener.join(timeout=HANG)

    assert seen == ["task-received", "task-started", "task-succeeded"]
