"""Billing jobs. Routes: events and charges on `critical`, sweeps on `bulk`.

The money-moving ones are effect-once: their row changes and an idempotency key commit
together, so a redelivered or requeued job changes nothing twice (and they may be sent
through the outbox). Keys name the business object where a second job for it, not only
a second delivery, must do nothing.
"""

from celery import shared_task
from django.utils import timezone

from apps.billing.services import (
    dunning_enqueue_due,
    invoice_charge,
    invoices_generate_due,
)
from apps.billing.stripe_events import payment_event_process
from workers.core.routing import BULK, CRITICAL


@shared_task(route=CRITICAL, effect_once=True, effect_key="payment-event:{payment_event_id}")
def process_payment_event(payment_event_id: int) -> None:
    payment_event_process(payment_event_id=payment_event_id)


@shared_task(route=CRITICAL, effect_once=True, max_retries=6, retry_backoff_max=300)
def charge_invoice(invoice_id: int) -> None:
    invoice_charge(invoice_id=invoice_id)


@shared_task(route=BULK, soft_time_limit=300, time_limit=360)
def generate_due_invoices() -> None:
    invoices_generate_due(now=timezone.now())


@shared_task(route=BULK)
def run_dunning() -> None:
    dunning_enqueue_due(now=timezone.now())
