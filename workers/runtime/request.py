"""The worker-side request class used by every project task; what it tells monitors
(`inspect`, task events: Flower) about a task's arguments and errors is redacted."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.request import Request

from workers.core.redaction import redact_text
from workers.core.task_ids import task_id_usable

MALFORMED_BODY = "task body is not [args, kwargs, options]"
UNUSABLE_TASK_ID = "task id is not non-empty text UTF-8 can carry"
#: Fields of the task events monitors show (Flower) that may carry a secret.
EVENT_TEXT_FIELDS = ("exception", "traceback", "result")


class PlatformRequest(Request):
    """Exposes the task's request while failures are handled in the worker's main process.

    Celery fires `task_failure` for hard time limits and rejected messages from the main
    process without pushing the request, so the dead-letter hook would not know the queue,
    the attempt number or the worker. Pushing it gives every failure path the same context.
    """

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        """Turn a body of the wrong shape, or a task id of the wrong kind, into an
        invalid-task error.

        Celery unpacks the body here without a guard, and the ValueError stops the whole
        worker; redelivered, the same message would stop every worker that takes it.
        As InvalidTaskError the consumer parks it as a dead letter and carries on.
        """
        try:
            super().__init__(message, *args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise InvalidTaskError(f"{MALFORMED_BODY}: {exc}") from exc
        if not isinstance(self._args, list | tuple) or not isinstance(self._kwargs, dict):
            raise InvalidTaskError(f"{MALFORMED_BODY}: args must be a list, kwargs an object")
        if not task_id_usable(self.id):
            # Celery's next step hashes it (a list stopped every worker that took the
            # message), and the records of the run are keyed by it.
            raise InvalidTaskError(f"{UNUSABLE_TASK_ID}: {self.id!r}")

    @contextmanager
    def _pushed(self) -> Iterator[None]:
        self.task.request_stack.push(self._context)
        try:
            yield
        finally:
            self.task.request_stack.pop()

    def on_timeout(self, soft: bool, timeout: float) -> None:
        with self._pushed():
            super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> None:
        with self._pushed():
            super().on_failure(exc_info, send_failed_event=send_failed_event,
                               return_ok=return_ok)

    def info(self, safe: bool = False) -> Any:
        """What `inspect active`, `reserved` and `scheduled` report (Flower's worker pages):
        the redacted argument reprs the message carries (workers/runtime/task_messages.py),
        never the arguments themselves, which Celery sends unless asked for `safe`."""
        info = super().info(safe=True)
        info["args"], info["kwargs"] = redact_text(info["args"] or ""), redact_text(
            info["kwargs"] or "")
        return info

    def send_event(self, type: str, **fields: Any) -> None:
        """The exception, traceback and result a task event carries, redacted as the admin
        shows them: Flower shows each failed task's."""
        for name in EVENT_TEXT_FIELDS:
            if isinstance(fields.get(name), str):
                fields[name] = redact_text(fields[name])
        super().send_event(type, **fields)
