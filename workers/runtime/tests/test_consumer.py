"""The consumer publishes task events in batches, and monitors still see each one."""

from celery.utils import uuid

from tests import tasks
from tests.task_events import task_events
from workers.core.routing import BULK


def test_task_events_still_reach_monitors_when_batched(live_workers, test_redis):
    task_id = uuid()
    with task_events(test_redis, task_id=task_id, last="task-succeeded") as events:
        tasks.database_backend.apply_async(args=[task_id], queue=BULK, task_id=task_id)

    assert [event["type"] for event in events] == [
        "task-received", "task-started", "task-succeeded"]
