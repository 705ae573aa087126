"""Alert delivery (name as in workers/core/tasks.py)."""

from celery import shared_task

from workers.core.routing import CRITICAL
from workers.ops.alerts.services import alert_deliver


@shared_task(name="workers.tasks.deliver_alert", route=CRITICAL, max_retries=0,
             soft_time_limit=60, time_limit=90)
def deliver_alert(alert_id: int) -> None:
    """A failed delivery is not retried here but by the alert checks' sweep, with the
    row's backoff: an alert that cannot be sent must not become a dead letter that alerts."""
    alert_deliver(alert_id=alert_id)
