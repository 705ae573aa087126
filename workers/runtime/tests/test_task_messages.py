"""What monitors (Flower) get of a task from real workers, its task events and its
`inspect` entries, shows none of its secrets: not a positional argument of a parameter
named `password`, not a secret keyword argument, not the password its exception message
and traceback repeat. The message itself carries the exact call."""

import json

from celery.utils import uuid

from config.celery import app
from tests import tasks
from tests.fixtures import wait_for
from tests.task_events import task_events
from tests.waits import dead_letter
from workers.core.routing import CRITICAL

PASSWORD = "tb-password-5e0c7a"  # positional: login(username, password)
SESSION = "tb-session-91d2f4"  # a keyword argument


def test_monitors_never_see_a_tasks_secrets(live_workers, test_redis):
    task_id, hold = uuid(), uuid()
    with task_events(test_redis, task_id=task_id, last="task-failed") as events:
        tasks.login.apply_async(args=["alice", PASSWORD], kwargs={"hold": hold,
                                                                  "session": SESSION},
                                queue=CRITICAL, task_id=task_id)

        def running() -> list[dict]:
            replies = app.control.inspect(destination=["critical@test"], timeout=1).active()
            return [entry for entries in (replies or {}).values() for entry in entries
                    if entry["id"] == task_id]

        (active,) = wait_for(running, what="the task to run")  # Flower's worker page
        scheduled = app.control.inspect(destination=["critical@test"], timeout=1)
        reserved = (scheduled.reserved(), scheduled.scheduled())
        test_redis.set(f"test:release:{hold}", 1)

    row = dead_letter(task_id)
    assert [event["type"] for event in events] == [
        "task-received", "task-started", "task-failed"]
    shown = json.dumps([active, reserved, events])
    assert PASSWORD not in shown
    assert SESSION not in shown
    assert "'alice'" in active["args"]
    assert "[redacted]" in active["args"]
    assert "login failed for" in events[-1]["exception"]
    assert "PermanentError" in events[-1]["traceback"]
    assert (row.args, row.kwargs) == (["alice", PASSWORD], {"hold": hold, "session": SESSION})
    # The arguments are stored exact for the replay; the error text without the call's
    # secret arguments (it repeats them with no name beside them as often as with one).
    assert row.message == "login failed for {'username': 'alice', 'password': '[redacted]'}"
