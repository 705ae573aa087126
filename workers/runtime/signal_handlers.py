"""Celery signal handlers: the dead-letter hand-off, dedup keys and message time stamps.
(The argument reprs a message shows are redacted where Celery builds the message:
workers/runtime/task_messages.py.)

`task_failure` is the one path every terminal failure takes, in the pool child (errors,
exhausted retries) or in the worker's main process (hard time limits, lost workers,
rejected messages), so recording here catches them all.
"""

import contextlib
import logging
import time
from datetime import datetime
from typing import Any

from celery import states
from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    task_success,
    worker_process_shutdown,
)
from django.db import close_old_connections, connections
from redis.exceptions import RedisError

from workers.core.correlation import (
    bind_correlation_id,
    correlation_id,
    new_correlation_id,
)
from workers.core.dedup import dedup_release
from workers.core.exceptions import UnroutedTaskError
from workers.core.headers import (
    CORRELATION_HEADER,
    DEDUP_HEADER,
    ENQUEUED_AT_HEADER,
    REPLAY_HEADER,
)
from workers.core.outbox_marks import outbox_marks_flush_before_exit
from workers.core.redaction import REDACTED, call_secrets, redact_text
from workers.core.routing import queue_for, queue_of_routing_key
from workers.dead_letters.replay_resolutions import replay_succeeded
from workers.dead_letters.services import (
    dead_letter_record,
)
from workers.runtime.attempts import attempt_error_push, attempt_errors_take, retry_over
from workers.runtime.request import replay_noted_with_ack

logger = logging.getLogger(__name__)


@before_task_publish.connect
def stamp_enqueue_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Lets `queues stats` tell the age of the oldest waiting message, and carries the
    correlation id of the request or task enqueueing it (a new one for beat's sends)."""
    if headers is not None:
        headers.setdefault(ENQUEUED_AT_HEADER, time.time())
        if CORRELATION_HEADER not in headers:  # an outbox row's: bound when it was written
            headers[CORRELATION_HEADER] = correlation_id() or new_correlation_id()


@before_task_publish.connect
def redact_reprs_given_as_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """The shown call as text, redacted again: a caller's `headers={"argsrepr": …}` replaces
    the one Celery's builder redacted (workers/runtime/task_messages.py). Each is already
    redacted text almost always, which redacting leaves as it is (and short ones come from
    a cache)."""
    if headers is None:
        return
    for name in ("argsrepr", "kwargsrepr"):
        shown = headers.get(name)
        if isinstance(shown, str):
            headers[name] = redact_text(shown)
        elif shown is not None:
            headers[name] = REDACTED


@task_prerun.connect
def bind_task_correlation_id(sender: Any = None, **_: Any) -> None:
    """What this task enqueues, and what it logs, carries the id it was sent with (until
    the next task in this process binds its own)."""
    bind_correlation_id(sender.request.get(CORRELATION_HEADER))


@task_prerun.connect
@task_postrun.connect
def recycle_database_connections(sender: Any = None, **_: Any) -> None:
    """Keep a pool process's database connection across tasks, as Django does across
    requests: closed once older than CONN_MAX_AGE or broken, health-checked before reuse.

    Celery's Django fix-up would close it around every task (see CELERY_DB_REUSE_MAX in
    settings), a new PostgreSQL connection per task. Eager runs (tests) are left alone,
    as the fix-up leaves them.
    """
    if not getattr(sender.request, "is_eager", False):
        close_old_connections()


@worker_process_shutdown.connect
def close_database_connections(**_: Any) -> None:
    """A pool process leaving (recycled, or the worker stopping) marks the outbox rows it
    published (its exit may skip atexit) and ends its kept database session itself,
    rather than leaving the server to notice a dropped socket."""
    outbox_marks_flush_before_exit()
    connections.close_all()


@task_failure.connect
def record_dead_letter(*, sender: Any, task_id: str, exception: BaseException,
                       args: Any = None, kwargs: Any = None, einfo: Any = None,
                       **_: Any) -> None:
    request = sender.request
    delivery_info = request.delivery_info or {}
    close_old_connections()  # the main worker process may hold a connection gone stale
    try:
        earlier_errors = attempt_errors_take(task_id=task_id)
        if request.retries:  # a failure in the main process skips postrun
            retry_over(task_id=task_id)
    except RedisError:
        earlier_errors = []  # the row still keeps the last error
    try:
        dead_letter_record(
            task_id=task_id,
            task_name=sender.name,
            queue=(queue_of_routing_key(delivery_info.get("routing_key"))
                   or _routed_queue(sender.name)),
            args=args,
            kwargs=kwargs,
            exception=exception,
            traceback=str(einfo.traceback) if einfo else "",
            attempts=(request.retries or 0) + 1,
            worker=request.hostname or "",
            replay_of_id=request.get(REPLAY_HEADER),
            attempt_errors=earlier_errors,
        )
    except Exception:
        # The database is down: the failure is still in the worker log and in Sentry.
        logger.exception("could not dead-letter %s[%s]", sender.name, task_id)
    dedup_key = request.get(DEDUP_HEADER)
    if dedup_key is not None:  # failures in the main process (lost worker) skip postrun
        dedup_release(key=dedup_key, task_id=task_id)


@task_retry.connect
def remember_attempt_error(sender: Any = None, request: Any = None, reason: Any = None,
                           **_: Any) -> None:
    """Keep this attempt's error for the dead letter, should the job never succeed.
    `reason` is Celery's Retry; the task's own exception is its `exc`."""
    error = getattr(reason, "exc", None) or reason
    if isinstance(error, BaseException) and request is not None:
        when = getattr(reason, "when", None)
        due_at = (when.timestamp() if isinstance(when, datetime) else
                  time.time() + float(when or 0))
        delivery_info = request.delivery_info or {}
        with contextlib.suppress(RedisError):  # the retry goes ahead either way
            attempt_error_push(task_id=request.id, task_name=sender.name,
                               queue=queue_of_routing_key(delivery_info.get("routing_key")),
                               attempt=(request.retries or 0) + 1, exception=error,
                               due_at=due_at,
                               hidden=call_secrets(task_name=sender.name, args=request.args,
                                                   kwargs=request.kwargs))


@task_postrun.connect
def forget_finished_retry(*, sender: Any, task_id: str, state: str | None = None,
                          **_: Any) -> None:
    """A retried job's attempt ended (only a retried one can be waiting: a first attempt
    costs no round trip here)."""
    if sender.request.retries and state != states.RETRY:
        with contextlib.suppress(RedisError):
            retry_over(task_id=task_id)


@task_postrun.connect
def release_dedup_key(*, sender: Any, task_id: str, state: str | None = None,
                      **_: Any) -> None:
    """The job ended (not merely scheduled a retry): an equal one may be enqueued again."""
    dedup_key = sender.request.get(DEDUP_HEADER)
    if dedup_key is not None and state != states.RETRY:
        dedup_release(key=dedup_key, task_id=task_id)


@task_success.connect
def resolve_replayed_dead_letter(sender: Any = None, **_: Any) -> None:
    """Note a successful replay, unless the worker's main process notes it with the ack
    (workers/runtime/request.py)."""
    request = sender.request
    dead_letter_id = request.get(REPLAY_HEADER)
    if dead_letter_id is not None and (getattr(request, "is_eager", False)
                                       or not replay_noted_with_ack(sender)):
        replay_succeeded(dead_letter_id=dead_letter_id, replay_task_id=request.id)


def _routed_queue(task_name: str) -> str:
    """The queue from the route table, or blank: an unroutable task still gets its row."""
    try:
        return queue_for(task_name)
    except UnroutedTaskError:
        return ""
