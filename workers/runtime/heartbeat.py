"""Heartbeats of workers and beat: liveness files for probes, Redis records for metrics.

A worker beats every WORKER_HEARTBEAT_INTERVAL seconds from its event loop while its
broker connection is up; beat on every tick (holder and standby alike). Each beat:

- rewrites the liveness file, if one is set (WORKER_HEARTBEAT_FILE, BEAT_HEARTBEAT_FILE):
  `python -m workers.ops.liveness FILE --max-age N` reads its age and nothing else, so a
  probe never starts a Django process;
- (workers) records in Redis when it beat, the queues it consumes and how many tasks it is
  running, for `celery_worker_up` and a pool's count of live workers;
- sends the `heartbeat` signal, on which the periodic checks hang (the alerts' thresholds,
  workers/ops/alerts): any live process can run them, so a dead beat or a dead pool is
  still noticed by the others.

A stuck event loop, a lost broker or a hung beat stops the beats; a worker that shuts
down deletes its record, so only one that died is shown as lost.
"""

import logging
import time
from pathlib import Path
from typing import Any

from celery import bootsteps
from celery.worker import state as worker_state
from django.conf import settings
from django.dispatch import Signal
from redis.exceptions import RedisError

from workers.runtime.heartbeat_records import forget_worker_heartbeat, write_worker_heartbeat
from workers.runtime.metric_store import set_node_name

logger = logging.getLogger(__name__)

STARTED_AT = time.time()  # the worker's main process imports this as it boots

#: Sent by every worker heartbeat and beat tick; `sender` is "worker" or "beat".
heartbeat = Signal()


def touch(path: str) -> None:
    """Write the file again (its modification time is the heartbeat)."""
    Path(path).touch()


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Consumer step: the heartbeat runs on the consumer's timer, in its event loop."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        self.tref: Any = None
        super().__init__(consumer, **kwargs)

    def start(self, consumer: Any) -> None:
        set_node_name(consumer.hostname)
        self._beat(consumer)
        self.tref = consumer.timer.call_repeatedly(settings.WORKER_HEARTBEAT_INTERVAL,
                                                   self._beat, (consumer,))

    def stop(self, consumer: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def shutdown(self, consumer: Any) -> None:
        """The worker stops (warm or cold shutdown; a lost connection only stops the
        step): its record goes, so it is not taken for a worker that died."""
        self.stop(consumer)
        try:
            forget_worker_heartbeat(nodename=consumer.hostname)
        except RedisError as exc:
            logger.warning("worker heartbeat left in Redis at shutdown: %s", exc)

    def _beat(self, consumer: Any) -> None:
        connection = consumer.connection
        if connection is None or not connection.connected:
            return
        if settings.WORKER_HEARTBEAT_FILE:
            touch(settings.WORKER_HEARTBEAT_FILE)
        try:
            write_worker_heartbeat(nodename=consumer.hostname,
                                   queues=sorted(consumer.app.amqp.queues.consume_from),
                                   active=len(worker_state.active_requests),
                                   concurrency=consumer.controller.concurrency or 0,
                                   pool=type(consumer.pool).__module__.rpartition(".")[2],
                                   started_at=STARTED_AT)
        except RedisError as exc:
            logger.warning("worker heartbeat not recorded in Redis: %s", exc)
        heartbeat.send(sender="worker")
