"""Log records that say which task and which request they belong to.

`TaskContextFilter` (on the console handler of every process) adds `task_id`,
`task_name`, `queue`, `attempt` and `correlation_id` to each record: filled in while a task
runs in a worker, blank elsewhere except the correlation id of a web request. With
`LOG_FORMAT=json` each record is one JSON object per line with those fields
(python-json-logger); the plain format stays the local default.

The same filter redacts each record it passes (`redact_record`) as the admin redacts what
it shows: Celery logs a failed task's exception and traceback, the body of a message it
cannot use ("The full contents of the message body was: …", at most 1024 characters) and,
in the record's extra data, the task's argument reprs. (Sentry's logging integration
sees each record before this handler does.)
"""

import logging
from collections.abc import Mapping
from typing import Any

from celery import current_app

from workers.core.correlation import correlation_id
from workers.core.redaction import (
    call_secrets,
    hide_values,
    redact,
    redact_text,
    visible_line,
    visible_text,
)
from workers.core.routing import queue_of_routing_key

#: A record's own attributes; any other one is extra data (`extra=`), which the JSON format
#: writes out: Celery's failure records carry the task's `data` there.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "task_id", "task_name", "queue", "attempt",
    "correlation_id"}
_TRACEBACKS = logging.Formatter()


class TaskContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.task_id = record.task_name = record.queue = record.attempt = ""
        record.correlation_id = correlation_id()
        task = current_app.current_task
        hidden: tuple[str, ...] = ()
        if task is not None and task.request.id:
            request = task.request
            record.task_id = request.id
            record.task_name = task.name
            record.queue = queue_of_routing_key((request.delivery_info or {}).get("routing_key"))
            record.attempt = (request.retries or 0) + 1
            # Celery's "Retry in 6s: TransientError('… hunter2 …')" repeats the exception.
            hidden = call_secrets(task_name=task.name, args=request.args,
                                  kwargs=request.kwargs)
        redact_record(record, hidden=hidden)
        return True


def _message_with_values_on_one_line(record: logging.LogRecord) -> tuple[str, bool]:
    """The record's message as `getMessage` formats it, but with each text argument as
    one line (`visible_line`); and whether that changed any argument."""
    args = record.args
    changed = False
    if isinstance(args, tuple):
        shown = tuple(_on_one_line(value) for value in args)
        changed = any(value is not one_line for value, one_line in zip(args, shown, strict=True))
        args = shown
    elif isinstance(args, Mapping):
        shown_map = {key: _on_one_line(value) for key, value in args.items()}
        changed = any(value is not shown_map[key] for key, value in args.items())
        args = shown_map
    message = str(record.msg)
    return (message % args if args else message), changed


def _on_one_line(value: object) -> object:
    """A text argument as one line; the same object when that changes nothing."""
    if not isinstance(value, str):
        return value
    one_line = visible_line(value)
    return value if one_line == value else one_line


def redact_record(record: logging.LogRecord, *, hidden: tuple[str, ...] = ()) -> None:
    """The record's message, traceback and extra data, redacted in place, `hidden` (the
    running task's secret arguments) taken out of the text. A record whose message cannot
    be formatted is left for the handler to report as it would."""
    try:
        message, values_changed = _message_with_values_on_one_line(record)
    except Exception:  # the logging call's own bug: the handler reports it
        return
    # No log injection: control characters written out, and a newline only where the
    # message's own text has one, not inside a value it was given (a producer's task id).
    # A record left as it is keeps its arguments apart (Sentry's scrubbing reads them).
    shown = visible_text(redact_text(hide_values(message, hidden)))
    if values_changed or shown != message:
        record.msg, record.args = shown, None
    if record.exc_info:
        record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        record.exc_info = None  # formatters print exc_text instead
    if record.exc_text:
        record.exc_text = visible_text(redact_text(hide_values(record.exc_text, hidden)))
    if record.stack_info:
        record.stack_info = redact_text(hide_values(record.stack_info, hidden))
    extra: dict[str, Any] = {name: value for name, value in vars(record).items()
                             if name not in _RECORD_ATTRIBUTES}
    for name, value in extra.items():
        setattr(record, name, redact(value))
