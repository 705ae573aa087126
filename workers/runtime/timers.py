"""A worker bootstep that keeps cancelled timers from piling up in the event loop.

Each task with a time limit schedules a timer in the worker's main process; when the task
finishes first, Celery cancels it, and kombu's timer only marks it cancelled, leaving it in
its heap until it would have fired (TASK_SOFT_TIME_LIMIT later). A busy worker so holds
a timer for every task of the last minute (docs/performance.md measures the memory), and
the pool processes forked from it inherit the pages. The step rebuilds the heap without
them when they are the majority, as asyncio's event loop does with its own cancelled timers.
"""

import heapq
from typing import Any

from celery import bootsteps
from kombu.asynchronous.timer import Timer

COMPACT_EVERY = 2.0  # seconds
MIN_HEAP = 100  # below this, cancelled entries cost less than a pass over them


def compact_cancelled(timer: Timer) -> int:
    """Drop cancelled entries from the timer's heap when they outnumber the live ones.

    Works on kombu's heap list in place: the timer's iterator holds that same list.
    Returns how many were dropped.
    """
    heap = timer._queue
    live = [event for event in heap if not event.entry.canceled]
    dropped = len(heap) - len(live)
    if len(heap) < MIN_HEAP or dropped <= len(live):
        return 0
    heap[:] = live
    heapq.heapify(heap)
    return dropped


class RepeatingStep(bootsteps.StartStopStep):
    """A worker bootstep that calls `repeat(worker)` every `every` seconds on the worker's
    event loop (prefork), from its start to its stop."""

    requires = ("celery.worker.components:Hub",)
    every: float

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.tref: Any = None
        super().__init__(worker, **kwargs)

    def include_if(self, worker: Any) -> bool:
        return worker.use_eventloop

    def start(self, worker: Any) -> None:
        self.tref = worker.hub.call_repeatedly(self.every, self.repeat, worker)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def repeat(self, worker: Any) -> None:
        raise NotImplementedError


class CancelledTimerCompaction(RepeatingStep):
    every = COMPACT_EVERY

    def repeat(self, worker: Any) -> None:
        compact_cancelled(worker.hub.timer)
