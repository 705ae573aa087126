"""Queue names and the router that sends each task to one of them.

Routes are explicit, one line per task, so adding a task without deciding its queue
fails at enqueue time (and in the test suite) instead of landing on a queue nobody reads.
"""

from fnmatch import fnmatchcase

from workers.exceptions import UnroutedTaskError

CRITICAL = "critical"
BULK = "bulk"
QUEUES = (CRITICAL, BULK)

ROUTES: dict[str, str] = {
    # platform
    "workers.tasks.probe": CRITICAL,
    "workers.tasks.dead_letter_drill": CRITICAL,
    "workers.tasks.sweep_outbox": CRITICAL,  # it publishes critical jobs: no bulk backlog
    "workers.tasks.drain_dead_letter_spool": CRITICAL,  # a few inserts, after an outage
    "workers.tasks.purge_expired_records": BULK,
    # notifications
    "apps.notifications.tasks.send_notification": CRITICAL,
    "apps.notifications.tasks.fan_out_campaign": BULK,
    "apps.notifications.tasks.send_campaign_chunk": BULK,
    "apps.notifications.tasks.send_daily_digest": BULK,
    # billing
    "apps.billing.tasks.process_payment_event": CRITICAL,
    "apps.billing.tasks.mark_invoice_paid": CRITICAL,
    "apps.billing.tasks.send_payment_receipt": CRITICAL,
    "apps.billing.tasks.charge_invoice": CRITICAL,
    "apps.billing.tasks.generate_due_invoices": BULK,
    "apps.billing.tasks.run_dunning": BULK,
    # analytics
    "apps.analytics.tasks.rollup_last_hour": BULK,
    "apps.analytics.tasks.delete_expired_events": BULK,
    "apps.analytics.tasks.run_export": BULK,
    # Celery's own housekeeping (beat installs backend_cleanup by itself)
    "celery.*": BULK,
}


def queue_for(name: str) -> str:
    """The queue a task named `name` is routed to."""
    if name in ROUTES:
        return ROUTES[name]
    for pattern, queue in ROUTES.items():
        if "*" in pattern and fnmatchcase(name, pattern):
            return queue
    raise UnroutedTaskError(f"task {name!r} has no route: add it to workers/routing.py ROUTES")


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router (`task_routes`). An explicit `queue=` at call time wins."""
    if "queue" in options:
        return None
    return {"queue": queue_for(name)}
