"""The project's tasks, as every process sees them: web, CLI, beat and workers alike.

Celery registers a task when its module is imported. A worker imports every app's
`tasks.py` at start; a gunicorn worker or a `manage.py` command imports only what its
code path happened to touch, so `current_app.tasks` there holds some tasks and not
others, and two gunicorn workers could answer the same edit differently. Anything that
validates, routes or replays a task by name asks here, which runs Celery's autodiscovery
once per process first.
"""

from functools import cache
from typing import Any

from celery import Task, current_app

BUILT_IN_PREFIX = "celery."


def project_task(name: str, *, discover: bool = True) -> Task[Any, Any] | None:
    """The project's task called `name`, or None (Celery's own built-ins, such as
    `celery.starmap`, are not the project's: they replay any call they are given).

    `discover=False` where the process has imported them all already and importing again
    would do harm: a worker's main process handling a message of an unknown task (the
    discovery sets Django up again, which replaces the logging Celery redirected)."""
    if name.startswith(BUILT_IN_PREFIX):
        return None
    tasks = current_app.tasks
    if name not in tasks and discover:
        _discover_every_task()
    return tasks.get(name)


@cache
def _discover_every_task() -> None:
    """Import every installed app's tasks module (what a worker does at start)."""
    current_app.loader.import_default_modules()
