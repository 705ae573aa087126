"""Liveness files for workers and beat, so a probe never starts a Django process.

A worker rewrites WORKER_HEARTBEAT_FILE every WORKER_HEARTBEAT_INTERVAL seconds from its
event loop while its broker connection is up; beat rewrites BEAT_HEARTBEAT_FILE on every
tick (holder and standby alike). `python -m workers.ops.liveness FILE --max-age N` reads
the file's age and nothing else. A stuck event loop, a lost broker or a hung beat stops
the writes, and the probe fails.
"""

from pathlib import Path
from typing import Any

from celery import bootsteps
from django.conf import settings


def touch(path: str) -> None:
    """Write the file again (its modification time is the heartbeat)."""
    Path(path).touch()


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Consumer step: the heartbeat runs on the consumer's timer, in its event loop."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        self.tref: Any = None
        super().__init__(consumer, **kwargs)

    def include_if(self, consumer: Any) -> bool:
        return bool(settings.WORKER_HEARTBEAT_FILE)

    def start(self, consumer: Any) -> None:
        self._beat(consumer)
        self.tref = consumer.timer.call_repeatedly(settings.WORKER_HEARTBEAT_INTERVAL,
                                                   self._beat, (consumer,))

    def stop(self, consumer: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def _beat(self, consumer: Any) -> None:
        connection = consumer.connection
        if connection is not None and connection.connected:
            touch(settings.WORKER_HEARTBEAT_FILE)
