"""Notification jobs (routed to `critical` by workers.routing)."""

from celery import shared_task

from apps.notifications.services import notification_send


@shared_task(max_retries=8, retry_backoff_max=300)
def send_notification(notification_id: int) -> None:
    notification_send(notification_id=notification_id)
