"""Waits on what the test workers did, shared by the test modules that run real workers."""

from tests import tasks
from tests.fixtures import wait_for
from workers.dead_letters.models import DeadLetter


def dead_letter(task_id: str) -> DeadLetter:
    return wait_for(lambda: DeadLetter.objects.filter(task_id=task_id).first(),
                    what=f"a dead letter for {task_id}")


def dead_letter_handed_off(redis_client, task_id: str) -> DeadLetter:
    """The row of a task whose pool process handed the failure off, once that process is
    done with it (the alert it raises comes after the row): a test that ended at the row
    had its tables emptied while the worker still wrote, and the two deadlocked."""
    row = dead_letter(task_id)
    wait_for(lambda: int(redis_client.hget(tasks.FINISHED, task_id) or 0) >= row.attempts,
             what=f"the worker to finish with {task_id}")  # each attempt ends once
    return row


def ran_on(redis_client, task_id: str) -> tuple[str, str]:
    value = wait_for(lambda: redis_client.hget(tasks.RAN_ON, task_id), what=f"{task_id} to run")
    hostname, queue = value.split("|")
    return hostname, queue


def runs(redis_client, key: str) -> int:
    return int(redis_client.get(f"test:runs:{key}") or 0)
