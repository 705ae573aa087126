"""Run a beat entry now, from the operations console: what an operator does when a
nightly job must not wait for tomorrow, or to check a fix.

The job is the entry's own (task, arguments, options), sent at once. Once per entry per
minute: a second click, or a colleague's, in the same minute is refused by an enqueue
dedup key rather than sending the job twice. Each run is recorded in the admin's history
of that entry (LogEntry), with who and which task id.
"""

import contextlib
import json
import time

from celery import current_app
from celery.utils import uuid
from django.contrib.admin.models import CHANGE, LogEntry
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from workers.core.broker_health import broker_reachable
from workers.core.dedup import dedup_claim, dedup_release
from workers.core.task_registry import project_task

SLOT_SECONDS = 60
NAME_SHOWN = 200  # characters of a posted entry name echoed back


def schedule_run_now(*, entry_name: str, user_id: int, now: float | None = None) -> str:
    """Send the entry's job now and record it; return its task id. ValueError says why
    not (no such entry, not a task of the project, already sent this minute, Redis or
    the broker out of reach: then nothing is sent, and the minute stays free)."""
    shown = entry_name[:NAME_SHOWN]
    entry = PeriodicTask.objects.filter(name=entry_name).first()
    if entry is None:
        raise ValueError(f"no beat entry named {shown!r}")
    if project_task(entry.task) is None:
        raise ValueError(f"{entry.task!r} is not a task of this project")
    try:  # what beat would send, refused before the minute is claimed
        args, kwargs = json.loads(entry.args or "[]"), json.loads(entry.kwargs or "{}")
    except ValueError as error:
        raise ValueError(f"Not sent ({shown}): its arguments are not valid JSON "
                         f"({error})") from error
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError(f"Not sent ({shown}): its arguments must be a JSON list and its "
                         "keyword arguments a JSON object")
    if not broker_reachable():
        raise ValueError(f"Not sent ({shown}): the broker does not answer")
    slot = int((now or time.time()) // SLOT_SECONDS)
    task_id, key = uuid(), f"run-now:{entry.pk}:{slot}"
    try:
        holder = dedup_claim(key=key, task_id=task_id, ttl=SLOT_SECONDS)
    except RedisError as error:
        raise ValueError(f"Not sent ({shown}): Redis, which keeps it to once a minute, "
                         f"does not answer ({type(error).__name__})") from error
    if holder is not None:
        raise ValueError(f"Already run now this minute: {shown} (task {holder})")
    options = {key: value for key, value in (("queue", entry.queue),
                                              ("priority", entry.priority)) if value}
    try:
        current_app.send_task(entry.task, args=args, kwargs=kwargs, task_id=task_id,
                              retry=False, **options)
    except (OperationalError, OSError) as error:
        with contextlib.suppress(RedisError):
            dedup_release(key=key, task_id=task_id)
        raise ValueError(f"Not sent ({shown}): the broker refused it "
                         f"({type(error).__name__})") from error
    LogEntry.objects.log_actions(
        user_id=user_id, queryset=PeriodicTask.objects.filter(pk=entry.pk),
        action_flag=CHANGE, change_message=f"Run now from the console: task {task_id}",
        single_object=True)
    return task_id
