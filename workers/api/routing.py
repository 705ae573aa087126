"""Queue names and the router: each task declares its queue where it is defined.

    @shared_task(route=CRITICAL, max_retries=8)
    def send_notification(notification_id: int) -> None: ...

`route` is the platform's task option (Celery's own `queue` task attribute is deprecated
for removal in Celery 6). The router reads it for every call that names no queue itself,
including tasks sent by name (beat, the outbox, a dead-letter replay); a task that declares
none fails at enqueue (and in the test suite) instead of landing on a queue nobody reads.
A `queue=` passed at call time wins.
"""

from typing import Any

from celery import current_app

from workers.api.exceptions import UnroutedTaskError

CRITICAL = "critical"
BULK = "bulk"
QUEUES = (CRITICAL, BULK)


def queue_for(name: str, task: Any = None) -> str:
    """The queue the task named `name` declares (Celery's own tasks: bulk)."""
    if name.startswith("celery."):  # housekeeping, such as beat's backend_cleanup
        return BULK
    if task is None:
        tasks = current_app.tasks
        if name not in tasks:  # sent by name from a process that never imported its module
            current_app.loader.import_default_modules()
        task = tasks.get(name)
    queue = getattr(task, "route", None)
    if not isinstance(queue, str) or queue not in QUEUES:
        raise UnroutedTaskError(
            f"task {name!r} declares no queue: give its decorator route=CRITICAL or "
            "route=BULK (workers.api.routing)")
    return queue


def route_task(name: str, args: Any, kwargs: Any, options: dict[str, Any], task: Any = None,
               **kw: Any) -> dict[str, str] | None:
    """Celery router (`task_routes`): a call's own `queue=` wins, else the task's route."""
    if "queue" in options:
        return None
    return {"queue": queue_for(name, task)}
