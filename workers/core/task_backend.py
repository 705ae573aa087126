"""The platform as a backend of Django's standard task API (`TASKS` in settings).

    from workers.core.standard_tasks import task

    @task(queue_name="bulk")
    def rebuild_thumbnails(album_id: int) -> int: ...

    rebuild_thumbnails.enqueue(album_id=7)

A standard task travels as one platform task, `workers.tasks.run_standard_task`, carrying
the function's path and its call with every argument named by the function's signature (so
redaction by name, dead-letter edits and replays see `password=`, not a list). The worker
imports the function by its path: nothing registers it, and a module-level function of the
project's packages or an installed app runs (or of a module imported at start). Being a
platform task it gets what every task gets: routing by `queue_name` (an unknown queue is
refused at enqueue), `priority` as each broker reads it (workers/core/priorities.py),
retries with backoff for `TransientError` and a database outage, time limits, acks late,
the redelivery cap, dead letters, redacted reprs, correlation ids and metrics. A delivery
of a job that already succeeded is skipped (its result says so), which is what lets an
enqueue inside a transaction go through the outbox: published after commit or swept, never
lost, a second publish harmless. The run is not wrapped in a transaction (a long one would
hold the database, and SQLite's whole file): like any at-least-once job, a run cut short
by a lost worker runs again.

Results live in Redis (workers/core/task_results.py); a job still in the outbox reads as
READY from its row.
"""

import inspect
import json
import logging
import sys
import traceback as traceback_module
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from celery.utils import uuid
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone
from django.utils.module_loading import import_string

from workers.core.base import delay_check
from workers.core.exceptions import PermanentError
from workers.core.priorities import celery_priority
from workers.core.routing import QUEUES
from workers.core.signals import task_dead_lettered
from workers.core.standard_tasks import (
    BaseTaskBackend,
    InvalidTaskError,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)
from workers.core.task_results import (
    FAILED,
    READY,
    SUCCESSFUL,
    ResultRecord,
    result_enqueued,
    result_enqueued_while_publishing,
    result_finished,
    result_load,
    result_save,
    result_started,
)

logger = logging.getLogger(__name__)

RUNNER = "workers.tasks.run_standard_task"

AnyTask = Task[Any, Any]
AnyResult = TaskResult[Any]


class PlatformTaskBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True  # mapped per broker by workers/core/priorities.py

    def validate_task(self, task: AnyTask) -> None:
        super().validate_task(task)
        if task.queue_name not in QUEUES:
            raise InvalidTaskError(f"Queue {task.queue_name!r} is not one of the platform's "
                                   f"queues: {', '.join(QUEUES)}.")

    def enqueue(self, task: AnyTask, args: Any, kwargs: Any) -> AnyResult:
        self.validate_task(task)
        if task.run_after is not None:
            try:
                delay_check(name=task.module_path, eta=task.run_after)
            except ValueError as error:
                raise InvalidTaskError(str(error)) from error
        result_id = uuid()
        result: AnyResult = TaskResult(  # refuses what JSON cannot carry before any send
            task=task, id=result_id, status=TaskResultStatus.READY, enqueued_at=timezone.now(),
            started_at=None, finished_at=None, last_attempted_at=None, args=list(args),
            kwargs=dict(kwargs), backend=self.alias, errors=[], worker_ids=[])
        try:
            call = named_call(task, result.args, result.kwargs)
        except TypeError as error:
            raise InvalidTaskError(f"{task.module_path}: {error}") from error
        message = {"task_path": task.module_path, "call": call}
        priority = celery_priority(task.priority)

        record: dict[str, Any] = {"result_id": result_id, "task_path": task.module_path,
                                  "args": result.args, "kwargs": result.kwargs,
                                  "at": result.enqueued_at}
        if transaction.get_connection().in_atomic_block:
            from workers.core.outbox import outbox_enqueue

            # Before the outbox's publish, which it precedes.
            transaction.on_commit(partial(result_enqueued, **record))
            outbox_enqueue(task_name=RUNNER, kwargs=message, queue=task.queue_name,
                           task_id=result_id, eta=task.run_after, priority=priority,
                           headers={"shadow": task.module_path})  # what logs name it by
        else:
            from workers.core.tasks import run_standard_task

            with result_enqueued_while_publishing(**record):
                run_standard_task.apply_async(kwargs=message, task_id=result_id,
                                              queue=task.queue_name, eta=task.run_after,
                                              priority=priority, shadow=task.module_path)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> AnyResult:
        record = result_load(result_id=result_id) or _waiting_in_the_outbox(result_id)
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        return self._result(result_id, record)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        unknown = sorted(set(self.queues) - set(QUEUES))
        if not unknown:
            return []
        return [checks.Error(f"TASKS[{self.alias!r}]['QUEUES'] names {unknown}, which no "
                             "worker consumes", hint=f"use some of {list(QUEUES)}",
                             id="workers.E010")]

    def _result(self, result_id: str, record: ResultRecord) -> AnyResult:
        try:
            task = task_at(record.task_path)
        except UnknownStandardTask as error:  # renamed or removed since: no Task to show
            raise TaskResultDoesNotExist(f"{result_id}: {error}") from error
        return result_of(task, result_id, record)


def result_of(task: AnyTask, result_id: str, record: ResultRecord) -> AnyResult:
    """The TaskResult a record describes."""
    result: AnyResult = TaskResult(
        task=task, id=result_id,
        status=TaskResultStatus(record.status), enqueued_at=record.moment("enqueued_at"),
        started_at=record.moment("started_at"), finished_at=record.moment("finished_at"),
        last_attempted_at=record.moment("last_attempted_at"), args=record.args,
        kwargs=record.kwargs, backend=task.backend,
        errors=[TaskError(**error) for error in record.errors],
        worker_ids=list(record.worker_ids))
    object.__setattr__(result, "_return_value", record.return_value)
    return result


def task_at(path: str) -> AnyTask:
    """The standard task a module-level name holds, imported if need be: only from the
    project's packages, an installed app or a module already imported, since a message
    names the path and importing a module runs it."""
    found = _tasks_found.get(path)
    if found is not None:
        return found
    module = str(path).rpartition(".")[0]
    if not (module in sys.modules or any(module == app or module.startswith(f"{app}.")
                                         for app in _app_modules())):
        raise UnknownStandardTask(f"{path!r} is not in the project or an installed app")
    try:
        found = import_string(path)
    except Exception as error:  # a module that fails to import is not a task here either
        raise UnknownStandardTask(f"{path!r} cannot be imported: {error}") from error
    if not isinstance(found, Task):
        raise UnknownStandardTask(f"{path!r} is not a task (decorate it with @task)")
    _tasks_found[path] = found
    return found


_tasks_found: dict[str, AnyTask] = {}  # a worker runs the same few functions over and over


class UnknownStandardTask(PermanentError):
    """A message names a function that is not a standard task this codebase may run."""


@lru_cache(maxsize=1)
def _app_modules() -> tuple[str, ...]:
    """The installed apps' own modules (`django.contrib.admin`, not `django.contrib.gis`,
    which loads GDAL) and the whole top-level packages of the project's own apps, those
    that sit in the project's directory (`apps`, `workers`, `tests`)."""
    names = set()
    for config in apps.get_app_configs():
        names.add(config.name)
        top = config.name.partition(".")[0]
        if (Path(settings.BASE_DIR) / top / "__init__.py").is_file():
            names.add(top)
    return tuple(sorted(names))


def named_call(task: AnyTask, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call with every argument under its parameter's name (`*args` as a list under
    its own); a call that does not fit the signature is refused as Python would."""
    bound = _signature(task).bind(*args, **kwargs)
    return dict(bound.arguments)


def positional_call(task: AnyTask, call: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """`named_call` undone: what to call the function with. A name the function does not
    take (an edited dead letter's typo) is refused rather than dropped."""
    signature = _signature(task)
    unknown = sorted(set(call) - set(signature.parameters))
    if unknown:
        raise TypeError(f"{task.module_path} takes no argument named {', '.join(unknown)}")
    bound = inspect.BoundArguments(signature, dict(call))
    return bound.args, bound.kwargs


def standard_call_refusal(message: object) -> str:
    """Why a runner message's kwargs cannot run here ("" if they can): what a dead-letter
    edit or replay checks, as it checks a Celery task's arguments."""
    if not isinstance(message, dict) or not isinstance(message.get("call"), dict):
        return "a standard task's kwargs are {\"task_path\": ..., \"call\": {...}}"
    try:
        task = task_at(str(message.get("task_path")))
        args, kwargs = positional_call(task, message["call"])
        _signature(task).bind(*args, **kwargs)
    except (UnknownStandardTask, TypeError) as error:
        return str(error)
    return ""


@lru_cache(maxsize=1024)
def _signature(task: AnyTask) -> inspect.Signature:
    signature = inspect.signature(task.func)
    if task.takes_context:  # the first parameter is the context, which the worker passes
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return signature


def standard_task_run(*, result_id: str, task_path: str, call: dict[str, Any],
                      worker_id: str, will_retry: Callable[[BaseException], bool]) -> None:
    """Run one attempt, recording it for `get_result` and sending Django's signals. A
    delivery of a job that already succeeded (the outbox published it twice, or its ack
    was lost) does nothing."""
    task = task_at(task_path)
    sender = type(task.get_backend())
    args, kwargs = positional_call(task, call)
    record = result_started(result_id=result_id, task_path=task_path, args=list(args),
                            kwargs=kwargs, worker_id=worker_id)
    if record.status == SUCCESSFUL:
        logger.info("%s[%s] already succeeded: this delivery is a repeat, skipped",
                    task_path, result_id)
        return
    result = result_of(task, result_id, record)
    task_started.send(sender, task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        returned = json.loads(json.dumps(value))  # what JSON cannot carry fails the run
    except Exception as error:
        retrying = will_retry(error)
        record = result_finished(result_id=result_id, record=record,
                                 status=READY if retrying else FAILED, error=error,
                                 traceback=traceback_module.format_exc())
        if not retrying:
            task_finished.send(sender, task_result=result_of(task, result_id, record))
        raise
    record = result_finished(result_id=result_id, record=record, status=SUCCESSFUL,
                             return_value=returned)
    task_finished.send(sender, task_result=result_of(task, result_id, record))


@receiver(task_dead_lettered, sender=RUNNER)
def fail_dead_lettered_result(*, task_id: str, exception_type: str, message: str,
                              **_: Any) -> None:
    """A run its worker never reported on (a lost worker, a hard time limit, the
    redelivery cap) is FAILED once it is a dead letter."""
    record = result_load(result_id=task_id)
    if record is None or record.status in (FAILED, SUCCESSFUL):
        return
    record.errors.append({"exception_class_path": exception_type, "traceback": message})
    record.status, record.finished_at = FAILED, timezone.now().isoformat()
    result_save(result_id=task_id, record=record)
    try:
        backend = task_at(record.task_path).get_backend()
    except UnknownStandardTask:
        return  # the function is gone: no result object to send
    task_finished.send(type(backend), task_result=backend.get_result(task_id))


def _waiting_in_the_outbox(result_id: str) -> ResultRecord | None:
    """A job whose transaction committed but whose READY record was not written yet."""
    from workers.core.models import OutboxMessage

    row = OutboxMessage.objects.filter(task_id=result_id, task_name=RUNNER).first()
    if row is None:
        return None
    try:
        task = task_at(row.kwargs["task_path"])
        args, kwargs = positional_call(task, row.kwargs["call"])
    except (UnknownStandardTask, TypeError) as error:
        raise TaskResultDoesNotExist(f"{result_id}: {error}") from error
    return ResultRecord(task_path=task.module_path, args=list(args), kwargs=kwargs,
                        enqueued_at=row.created_at.isoformat())
