"""Signal handlers that feed the metrics recorder (workers/runtime/metric_store.py).

Started, succeeded, retried and the two histograms are recorded in the pool child that
runs the task; received, rejected and revoked in the worker's main process; failed in
whichever process reports the failure (the main one for hard time limits and lost
children), the same path the dead-letter hand-off takes.
"""

import contextlib
import time
from datetime import datetime
from typing import Any

from celery import states
from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_received,
    task_rejected,
    task_retry,
    task_revoked,
    worker_process_shutdown,
    worker_shutdown,
)
from django.conf import settings

from workers.core.headers import ENQUEUED_AT_HEADER
from workers.core.routing import queue_of_routing_key
from workers.runtime.metric_store import host_of, node_name, recorder

# Start times of the tasks running in this process, by task id.
_started: dict[str, float] = {}


def _labels(request: Any, name: str) -> tuple[str, tuple[str, str]]:
    """Host, then (task name, queue). The name is the message's shadow if it has one (a
    standard task's function, which the worker's `received` already counts by)."""
    delivery_info = getattr(request, "delivery_info", None) or {}
    shown = getattr(request, "shadow", None) or name
    queue = queue_of_routing_key(delivery_info.get("routing_key"))
    return host_of(request.hostname), (shown, queue)


@before_task_publish.connect
def count_arrival(routing_key: str | None = None, headers: dict[str, Any] | None = None,
                  **_: Any) -> None:
    """On RabbitMQ, when the message will enter its queue (its ETA, for a delay): what
    tells the age of a queue's oldest waiting message (workers/core/arrivals.py)."""
    queue = queue_of_routing_key(routing_key)
    if not settings.BROKER_IS_RABBITMQ or not queue:
        return
    at = time.time()
    eta = (headers or {}).get("eta")
    if eta:
        with contextlib.suppress(TypeError, ValueError):  # not Celery's ISO text
            at = max(at, datetime.fromisoformat(eta).timestamp())
    recorder.arrive(queue, at)


@task_received.connect
def count_received(request: Any = None, **_: Any) -> None:
    recorder.count("celery_task_received", *_labels(request, request.name))


@task_prerun.connect
def count_started(sender: Any = None, task_id: str = "", **_: Any) -> None:
    request = sender.request
    if getattr(request, "is_eager", False):
        return
    hostname, labels = _labels(request, sender.name)
    recorder.count("celery_task_started", hostname, labels)
    enqueued_at = request.get(ENQUEUED_AT_HEADER)
    now = time.time()
    if enqueued_at is not None:
        baseline = float(enqueued_at)
        if request.eta:  # a countdown or a retry's backoff is a wait on purpose
            eta = request.eta if isinstance(request.eta, datetime) else \
                datetime.fromisoformat(request.eta)
            baseline = max(baseline, eta.timestamp())
        recorder.observe("celery_task_queue_wait_time", hostname, labels,
                         max(0.0, now - baseline))
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def count_finished(sender: Any = None, task_id: str = "", state: str | None = None,
                   **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is None:
        return
    hostname, labels = _labels(sender.request, sender.name)
    recorder.observe("celery_task_runtime", hostname, labels, time.perf_counter() - started)
    if state == states.SUCCESS:
        recorder.count("celery_task_succeeded", hostname, labels)


@task_retry.connect
def count_retried(sender: Any = None, request: Any = None, **_: Any) -> None:
    recorder.count("celery_task_retried", *_labels(request, sender.name))


@task_failure.connect
def count_failed(sender: Any = None, exception: BaseException | None = None,
                 **_: Any) -> None:
    request = sender.request
    if getattr(request, "is_eager", False):
        return
    hostname, labels = _labels(request, sender.name)
    recorder.count("celery_task_failed", hostname, (*labels, type(exception).__name__))


@task_revoked.connect
def count_revoked(request: Any = None, **_: Any) -> None:
    recorder.count("celery_task_revoked", *_labels(request, request.name))


@task_rejected.connect
def count_rejected(message: Any = None, **_: Any) -> None:
    headers = getattr(message, "headers", None) or {}
    delivery_info = getattr(message, "delivery_info", None) or {}
    queue = queue_of_routing_key(delivery_info.get("routing_key"))
    recorder.count("celery_task_rejected", host_of(node_name()),
                   (str(headers.get("task", "")), queue))


@worker_process_shutdown.connect
@worker_shutdown.connect
def flush_metrics(**_: Any) -> None:
    """A pool child being recycled, or the worker stopping, sends what it still holds."""
    recorder.flush()
