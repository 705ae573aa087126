"""The worker's message consumer, changed in what it does with poison messages, in how
often it publishes task events, and in what its connection step tells `inspect stats`.

Celery logs and drops a message it cannot decode, one naming a task this worker does not
know, or one without a task shape. Each of those becomes a dead letter here, with the raw
body when no task could be built, and the worker goes on consuming.
"""

import hashlib
import logging
from typing import Any

from celery.exceptions import NotRegistered
from celery.worker.consumer import Consumer
from django.conf import settings
from django.db import close_old_connections

from workers.core.routing import dead_letter_queue, queue_of_routing_key
from workers.core.task_ids import task_id_usable
from workers.dead_letters.services import dead_letter_record_message
from workers.runtime.config_censor import censor_settings

logger = logging.getLogger(__name__)


class DeadLetteringConsumer(Consumer):
    _events_flush_due = False

    class Blueprint(Consumer.Blueprint):  # type: ignore[valid-type,misc]  # stubs: a variable
        def info(self, parent: Any) -> dict[str, Any]:
            """The steps' part of `inspect stats` (Flower's worker page), with the broker
            connection's transport options censored. Celery drops the connection's
            password only; the Sentinels' password is a transport option
            (`sentinel_kwargs`) and went out as it is."""
            info: dict[str, Any] = super().info(parent)
            if isinstance(info.get("broker"), dict):
                info["broker"] = censor_settings(info["broker"])
            return info

    def on_send_event_buffered(self) -> None:
        """Publish buffered task events in batches, not one Redis publish per event.

        Celery flushes on the next loop turn, which on a busy worker means a publish, and
        a new Redis client, for each of a task's three events: half the main process's
        time in `bench/throughput.py`. Monitors read a batch as they read single events.
        """
        if self.hub and not self._events_flush_due:
            self._events_flush_due = True
            self.hub.call_later(settings.WORKER_EVENTS_FLUSH_INTERVAL, self._flush_due_events)

    def _flush_due_events(self) -> None:
        self._events_flush_due = False
        self._flush_events()

    def connect(self) -> Any:
        """On RabbitMQ, declare every task queue and the dead-letter queue, with their
        exchanges, on each (re)connection.

        A worker declares only the queues it consumes, and Celery's native delayed
        delivery binds every queue's exchange when the consumer starts: without this a
        `-Q critical` worker fails to bind `bulk` until a bulk worker has run once. And a
        message a quorum queue dead-letters before its dead-letter queue exists stays
        stuck in the source queue.
        """
        connection = super().connect()
        if settings.BROKER_IS_RABBITMQ:
            channel = connection.default_channel
            for queue in (*self.app.amqp.queues.values(), dead_letter_queue()):
                queue.bind(channel).declare()
        return connection

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._park(message, exc)
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._park(message, ValueError("not a task message (no task name)"))
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        name = headers.get("task")
        self._park(message, NotRegistered(f"no task named {name!r} in this worker"))
        if not task_id_usable(headers.get("id")):
            # Celery stores a failed result under the id, which raised for a number, a
            # list or a lone surrogate and stopped the worker ("Unrecoverable error").
            logger.error("dropped a message for unknown task %r with an unusable id", name)
            message.reject_log_error(logger, self.connection_errors)
            return
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._park(message, exc)
        super().on_invalid_task(body, message, exc)

    def _park(self, message: Any, exc: BaseException) -> None:
        try:
            dead_letter_raw_message(
                message, exception=exc, worker=self.hostname,
                queue=queue_of_routing_key((message.delivery_info or {}).get("routing_key")))
        except Exception:
            # The database is down: Celery's own handler still logs the body below
            # (truncated by Celery, redacted by the log filter of workers/ops/logs.py).
            logger.exception("could not dead-letter a poison message")


def dead_letter_raw_message(message: Any, *, queue: str, exception: BaseException,
                            worker: str) -> None:
    """Store a message as it arrived (a poison message, or one RabbitMQ dead-lettered).

    Raises if neither the database nor the Redis spool could take it.
    """
    headers = message.headers if isinstance(message.headers, dict) else {}
    close_old_connections()  # the worker's main process may hold a connection gone stale
    dead_letter_record_message(
        task_id=_message_task_id(message),
        task_name=str(headers.get("task") or ""),
        queue=queue,
        raw_body=_message_text(message.body),
        content_type=message.content_type or "",
        exception=exception,
        worker=worker,
    )


def _message_task_id(message: Any) -> str:
    """The task id the message carries, else one derived from its body.

    Derived, not random, so that the same message reported twice (parked here, then
    dead-lettered by RabbitMQ after Celery rejects it) is stored once.
    """
    headers = message.headers if isinstance(message.headers, dict) else {}
    if headers.get("id"):
        return str(headers["id"])
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    return f"poison-{hashlib.sha256(body).hexdigest()[:32]}"


def _message_text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="backslashreplace")
    return str(body)
