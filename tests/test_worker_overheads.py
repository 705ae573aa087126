"""What each task costs the worker beyond its body: database connections and task events.

Both were found by bench/throughput.py: a new PostgreSQL connection per task, and a Redis
publish (with a new client) per task event.
"""

import threading
import time

from celery.utils import uuid

from config.celery import app
from tests import tasks
from tests.fixtures import wait_for
from workers.routing import BULK


def test_pool_processes_keep_their_database_connection_across_tasks(live_workers,
                                                                     test_redis):
    key = uuid()
    for _ in range(12):
        tasks.database_backend.apply_async(args=[key], queue=BULK)

    recorded = f"test:backends:{key}"
    wait_for(lambda: test_redis.llen(recorded) == 12, what="12 tasks to run")
    backends = test_redis.lrange(recorded, 0, -1)

    # Two pool processes, one connection each (Celery alone would open one per task).
    assert len(set(backends)) <= 2


def test_task_events_still_reach_monitors_when_batched(live_workers):
    task_id = uuid()
    seen: list[str] = []

    def on_event(event: dict) -> None:
        if event.get("uuid") == task_id:
            seen.append(event["type"])
            receiver.should_stop = event["type"] == "task-succeeded"

    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": on_event})
        listener = threading.Thread(target=lambda: receiver.capture(
            limit=None, timeout=20, wakeup=False), daemon=True)
        listener.start()
        time.sleep(1.0)  # Redis fan-out: the subscription must exist before events are sent
        tasks.database_backend.apply_async(args=[task_id], queue=BULK, task_id=task_id)
        listener.join(timeout=20)

    assert seen == ["task-received", "task-started", "task-succeeded"]
