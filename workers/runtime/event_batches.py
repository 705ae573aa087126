"""A consumer bootstep: how many task events one publish may carry.

workers/runtime/consumer.py publishes task events every WORKER_EVENTS_FLUSH_INTERVAL; this lets a
batch grow to that interval's worth rather than being cut at Celery's 24 events.
"""

from typing import Any

from celery import bootsteps

#: Most task events one publish carries: a busy worker's 0.1 s of events, not Celery's 24.
EVENT_BATCH_LIMIT = 1000


class EventBatchLimit(bootsteps.StartStopStep):
    """Let a batch of task events grow to EVENT_BATCH_LIMIT before it is published early.

    Celery's dispatcher publishes every 24 events whatever the flush interval, which on a
    busy worker is a publish every few milliseconds (docs/performance.md has the cost).
    The dispatcher is made anew each time the consumer (re)connects; this runs after.
    """

    requires = ("celery.worker.consumer.events:Events",)

    def start(self, consumer: Any) -> None:
        if consumer.event_dispatcher is not None:
            consumer.event_dispatcher.buffer_limit = EVENT_BATCH_LIMIT
