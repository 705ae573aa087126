"""The consumer publishes task events in batches, and monitors still see each one."""

import threading

from celery.utils import uuid

from config.celery import app
from tests import tasks
from tests.fixtures import HANG, wait_for
from workers.api.routing import BULK


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
        # Redis fan-out drops events sent before the receiver's pattern subscription.
        wait_for(lambda: test_redis.execute_command("PUBSUB", "NUMPAT") > patterns_before,
                 what="the event receiver to subscribe")
        tasks.database_backend.apply_async(args=[task_id], queue=BULK, task_id=task_id)
        listener.join(timeout=HANG)

    assert seen == ["task-received", "task-started", "task-succeeded"]
