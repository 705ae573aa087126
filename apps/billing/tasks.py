"""Billing jobs (routed to `critical` by workers.routing)."""

from celery import shared_task

from apps.billing.services import payment_event_process


@shared_task
def process_payment_event(payment_event_id: int) -> None:
    payment_event_process(payment_event_id=payment_event_id)
