"""The runtime: what plugs into Celery's worker, beat and transport internals.

Belongs here: the task request class, the message consumer, bootsteps, the beat
scheduler, the broker transport, Celery signal handlers. Must not: business rules, or
anything a task author calls (that is `workers.api`). Everything here is installed by
`install(app)` from config/celery.py (the settings name the classes Celery loads:
request, consumer, scheduler, transport), and every private Celery, kombu and
django-celery-beat name it relies on is checked by workers/runtime/tests/test_celery_internals.py.
"""

from celery import Celery

from workers.runtime.event_batches import EventBatchLimit
from workers.runtime.timers import CancelledTimerCompaction


def install(app: Celery) -> None:
    """Add the bootsteps, and connect the signal handlers once the app is finalized (they
    use the ORM, so they load after Django's app registry, before the first publish)."""
    app.steps["worker"].add(CancelledTimerCompaction)
    app.steps["consumer"].add(EventBatchLimit)

    @app.on_after_finalize.connect(weak=False)
    def connect_signal_handlers(sender: Celery, **_: object) -> None:
        from workers.runtime import signals  # noqa: F401  (connecting is importing)
