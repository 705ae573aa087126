"""The runtime: what plugs into Celery's worker, beat and transport internals.

Belongs here: the task request class, the message consumer, bootsteps, the beat
scheduler, the broker transport, Celery signal handlers. Must not: business rules, or
anything a task author calls (that is `workers.core`). The settings name the classes
Celery loads (request, consumer, scheduler, transport); `install(app)`, from
config/celery.py, adds the bootsteps, censors the settings the process reports
(`config_censor`), keeps the Django-style names of current settings out of Celery's
deprecation warnings (`deprecated_settings`) and has every URL of the broker's failover
list use the configured transport (`redis_transport.claim_failover_schemes`);
`connect_signal_handlers()`, from the workers app's `ready()`, connects the handlers once
Django's models can be imported, in every process that loads Django (so a publish from
any of them is stamped; the app's message builder, `task_messages`, redacts the argument
reprs of each). Every private Celery, kombu and django-celery-beat name this package
relies on is checked by workers/runtime/tests/test_celery_internals.py.
"""

from typing import Any

from celery import Celery

from workers.runtime import config_censor, deprecated_settings, redis_transport
from workers.runtime.event_batches import EventBatchLimit
from workers.runtime.heartbeat import WorkerHeartbeat
from workers.runtime.timers import CancelledTimerCompaction


def install(app: Celery) -> None:
    """Add the platform's bootsteps to the worker and its consumer, keep secrets out of
    the configuration the process reports (`celery inspect conf`, Flower), and keep a
    reconnect to the next broker URL on the configured transport."""
    config_censor.install()
    # Once the configuration is read (reading it here would load Django's settings
    # while they are still being imported).
    app.on_after_configure.connect(_claim_failover_schemes, sender=app, weak=False)
    app.on_after_configure.connect(_forget_namespaced_names, sender=app, weak=False)
    app.steps["worker"].add(CancelledTimerCompaction)
    app.steps["consumer"].add(EventBatchLimit)
    app.steps["consumer"].add(WorkerHeartbeat)
    # By name: it imports the dead-letter models, which need Django's registry first.
    app.steps["consumer"].add("workers.runtime.broker_dead_letters:BrokerDeadLetters")
    app.steps["worker"].add("workers.runtime.replay_resolution:ReplayResolution")


def _claim_failover_schemes(sender: Celery, source: Any, **kwargs: Any) -> None:
    redis_transport.claim_failover_schemes(source.broker_transport)


def _forget_namespaced_names(sender: Celery, source: Any, **kwargs: Any) -> None:
    deprecated_settings.forget_namespaced_names(source)


def connect_signal_handlers() -> None:
    """Importing the modules connects their handlers (they use the ORM)."""
    from workers.runtime import signal_handlers, task_metrics  # noqa: F401
