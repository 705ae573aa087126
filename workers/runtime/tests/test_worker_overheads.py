"""What each task costs the worker beyond its body: database connections, task events and
time-limit timers.

Each was found by bench/throughput.py: a new PostgreSQL connection per task, a Redis
publish (with a new client) per task event, and a minute of cancelled timers kept in the
worker's memory.
"""

import threading
from types import SimpleNamespace

from celery.utils import uuid
from kombu.asynchronous import Hub
from kombu.asynchronous.timer import Timer

from config.celery import app
from tests import tasks
from tests.fixtures import HANG, wait_for
from workers.api.routing import BULK
from workers.runtime.event_batches import EVENT_BATCH_LIMIT, EventBatchLimit
from workers.runtime.timers import CancelledTimerCompaction, compact_cancelled


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


def test_each_new_event_dispatcher_takes_batches_of_a_flush_interval():
    assert EventBatchLimit in app.steps["consumer"]
    with app.connection_for_write() as connection:
        consumer = SimpleNamespace(event_dispatcher=app.events.Dispatcher(connection))
        EventBatchLimit(consumer).start(consumer)

    assert consumer.event_dispatcher.buffer_limit == EVENT_BATCH_LIMIT


def test_cancelled_timers_are_dropped_once_they_outnumber_live_ones():
    timer = Timer()
    entries = [timer.call_after(60 + i, print, (i,)) for i in range(300)]
    for entry in entries[:250]:
        entry.cancel()

    assert compact_cancelled(timer) == 250
    # What is left is still a heap, in the order the live timers fire.
    assert [event.entry.args[0] for event in timer.queue] == list(range(250, 300))


def test_a_heap_of_mostly_live_timers_is_left_as_it_is():
    timer = Timer()
    entries = [timer.call_after(60 + i, print, (i,)) for i in range(300)]
    for entry in entries[:150]:
        entry.cancel()

    assert compact_cancelled(timer) == 0
    assert len(timer) == 300


def test_every_worker_compacts_its_timers_while_it_runs():
    assert CancelledTimerCompaction in app.steps["worker"]
    worker = SimpleNamespace(hub=Hub(Timer()), use_eventloop=True)
    step = CancelledTimerCompaction(worker)

    step.start(worker)
    (scheduled,) = worker.hub.timer.queue
    step.stop(worker)

    assert scheduled.entry.canceled
