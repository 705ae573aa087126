"""The worker-side request class used by every project task; what it tells monitors
(`inspect`, task events: Flower) about a task's arguments and errors is redacted."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.utils.imports import symbol_by_name
from celery.worker.request import Request
from celery.worker.state import successful_requests
from django.conf import settings

from workers.core.headers import REPLAY_HEADER
from workers.core.redaction import redact_text
from workers.core.task_ids import task_id_usable
from workers.dead_letters.replay_resolutions import PENDING_KEY, replay_note, replay_succeeded
from workers.runtime.redis_transport import SCHEMES

logger = logging.getLogger(__name__)

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

    def acknowledge(self) -> None:
        """Acknowledge; a successful replay's note goes in the same round trip.

        The note (workers/dead_letters/replay_resolutions.py) was an RPUSH of the pool
        process's own, a third of a replay's time there. Written with the ack, on the
        atomic-fetch transport's next fetch, the two are one step: a worker killed before
        it leaves both undone, and the rerun notes it.
        """
        if not self.acknowledged and self.id in successful_requests:
            dead_letter_id = self._request_dict.get(REPLAY_HEADER)
            if dead_letter_id is not None and replay_notes_ride_on_acks():
                self._note_replay(dead_letter_id)
        super().acknowledge()

    def _note_replay(self, dead_letter_id: int) -> None:
        push = getattr(self.message.channel, "push_with_ack", None)
        try:
            if push is not None:
                push(PENDING_KEY, replay_note(dead_letter_id=dead_letter_id,
                                              replay_task_id=self.id))
            else:  # a channel of another transport after all: noted on its own
                replay_succeeded(dead_letter_id=dead_letter_id, replay_task_id=self.id)
        except Exception as error:  # the worker's event loop must go on; the ack too
            logger.warning("could not note the replay of dead letter %s: %r",
                           dead_letter_id, error)

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


def replay_noted_with_ack(task: Any) -> bool:
    """Whether a successful replay of `task` is noted with its ack by the worker's main
    process (PlatformRequest.acknowledge) rather than by the pool process that ran it:
    where the broker is the platform's Redis on the atomic-fetch transport (never on
    RabbitMQ), for a task whose requests are this module's and whose ack comes after it
    ran (`acks_late`, the platform's setting)."""
    return (replay_notes_ride_on_acks() and bool(task.acks_late)
            and _is_platform_request(task.Request))


@cache
def replay_notes_ride_on_acks() -> bool:
    return (settings.CELERY_BROKER_TRANSPORT in SCHEMES
            and settings.REDIS_URL == settings.CELERY_BROKER_URL)


@cache
def _is_platform_request(request_class: type | str) -> bool:
    resolved = request_class if isinstance(request_class, type) else symbol_by_name(
        request_class)
    return issubclass(resolved, PlatformRequest)
