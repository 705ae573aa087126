"""A worker bootstep that resolves, every RESOLVE_EVERY seconds, the dead letters whose
replays this worker (or any other) noted as succeeded
(workers/dead_letters/replay_resolutions.py): so a replay's row shows "resolved" within a
quarter of a second after it ran, and a burst of replays costs an UPDATE a batch."""

import logging
from typing import Any

from celery.signals import worker_shutdown
from django.db import close_old_connections

from workers.dead_letters.replay_resolutions import replays_resolve
from workers.runtime.timers import RepeatingStep

logger = logging.getLogger(__name__)

RESOLVE_EVERY = 0.25  # seconds: a pass with nothing noted is two round trips to Redis


def resolve_noted() -> None:
    """One pass; an outage is logged and left for the next one (the notes stay)."""
    close_old_connections()  # the main process's connection may have gone stale
    try:
        replays_resolve()
    except Exception as error:  # the worker's event loop must go on
        logger.warning("could not resolve replayed dead letters yet: %r", error)


class ReplayResolution(RepeatingStep):
    every = RESOLVE_EVERY

    def repeat(self, worker: Any) -> None:
        resolve_noted()


@worker_shutdown.connect
def resolve_before_leaving(**_: Any) -> None:
    """Once the pool has finished its last tasks: their replays' rows are not left
    "requeued" until another worker's timer or beat's drain comes by."""
    resolve_noted()
