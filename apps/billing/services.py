"""Billing operations: payment events, invoices, charges and dunning."""

import calendar
import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.billing import gateway
from apps.billing.models import Invoice, PaymentEvent, Subscription
from apps.notifications.models import Kind
from apps.notifications.services import notification_request
from workers.api.exceptions import PermanentError


class MalformedEvent(ValueError):
    """The webhook body is not an event of the expected shape."""


class BillingRecordNotFound(PermanentError):
    """An event or job names an invoice or event that does not exist."""


def payment_event_parse(*, raw: bytes) -> dict[str, Any]:
    """The event as a dict, or MalformedEvent saying what is wrong with it."""
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise MalformedEvent("body must be a JSON object")
    for field in ("id", "type"):
        if not isinstance(event.get(field), str) or not event[field]:
            raise MalformedEvent(f"'{field}' must be a non-empty string")
    if not isinstance(event.get("data"), dict) or not isinstance(event["data"].get("object"),
                                                                  dict):
        raise MalformedEvent("'data.object' must be an object")
    return event


@transaction.atomic
def payment_event_store(*, event: dict[str, Any]) -> tuple[PaymentEvent, bool]:
    """Keep the event and its processing job together; a redelivered event is stored once.

    The job goes through the outbox: if the event is stored, it will be processed, even
    when the process dies right after the commit or Redis is down at that moment.
    """
    from apps.billing.tasks import process_payment_event

    stored, created = PaymentEvent.objects.get_or_create(
        event_id=event["id"], defaults={"type": event["type"], "payload": event})
    if created:
        process_payment_event.delay_via_outbox(stored.pk)
    return stored, created


@transaction.atomic
def payment_event_process(*, payment_event_id: int) -> PaymentEvent:
    """Apply the event once; unknown types are recorded as ignored, not errors."""
    try:
        event = PaymentEvent.objects.select_for_update().get(pk=payment_event_id)
    except PaymentEvent.DoesNotExist as exc:
        raise BillingRecordNotFound(f"payment event {payment_event_id} does not exist") from exc
    if event.outcome != PaymentEvent.Outcome.PENDING:
        return event
    handler = EVENT_HANDLERS.get(event.type)
    if handler is None:
        event.outcome = PaymentEvent.Outcome.IGNORED
    else:
        handler(event.payload["data"]["object"])
        event.outcome = PaymentEvent.Outcome.PROCESSED
    event.processed_at = timezone.now()
    event.save(update_fields=["outcome", "processed_at"])
    return event


def _on_payment_succeeded(payment: dict[str, Any]) -> None:
    """Mark the invoice paid, then send the receipt: two jobs, each retried on its own."""
    from apps.billing.tasks import mark_invoice_paid

    invoice = _invoice(lock=False, number=payment.get("invoice"))
    mark_invoice_paid.delay_via_outbox(invoice.pk, payment.get("id", ""))


def _on_payment_failed(payment: dict[str, Any]) -> None:
    invoice = _invoice(lock=True, number=payment.get("invoice"))
    if invoice.status == Invoice.Status.OPEN:
        _record_failed_charge(invoice, payment.get("failure_message") or "payment failed")


EVENT_HANDLERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "payment.succeeded": _on_payment_succeeded,
    "payment.failed": _on_payment_failed,
}


@transaction.atomic
def invoice_mark_paid(*, invoice_id: int, reference: str) -> bool:
    """Mark the invoice paid (and its subscription active again) and queue the receipt.

    False if it already was paid: whoever paid it queued the receipt.
    """
    invoice = _invoice(lock=True, pk=invoice_id)
    if invoice.status == Invoice.Status.PAID:
        return False
    _settle(invoice, reference)
    return True


def invoice_send_receipt(*, invoice_id: int) -> None:
    """Request the receipt; its idempotency key makes a repeated step send nothing new."""
    invoice = Invoice.objects.select_related("subscription__customer").get(pk=invoice_id)
    notification_request(
        kind=Kind.PAYMENT_RECEIPT, recipient=invoice.subscription.customer.email,
        subject=f"Receipt for {invoice.number}",
        body=f"We received {_money(invoice)} for {invoice.subscription.plan}, "
             f"{invoice.period_start} to {invoice.period_end}. Thank you.",
        idempotency_key=f"receipt:invoice:{invoice.pk}")


@transaction.atomic
def invoice_charge(*, invoice_id: int) -> Invoice:
    """Charge an open invoice that is due; a decline schedules the next dunning retry.

    The row lock makes concurrent duplicates wait and then find the invoice settled or
    rescheduled; the idempotency key per attempt makes a retried request charge once.
    """
    invoice = _invoice(lock=True, pk=invoice_id)
    due = invoice.next_charge_at is None or invoice.next_charge_at <= timezone.now()
    if invoice.status != Invoice.Status.OPEN or not due:
        return invoice
    customer = invoice.subscription.customer
    result = gateway.charge(
        customer_id=customer.provider_customer_id, amount_cents=invoice.amount_cents,
        currency=invoice.currency, description=f"Invoice {invoice.number}",
        idempotency_key=f"invoice-{invoice.pk}-attempt-{invoice.charge_attempts + 1}")
    if result.succeeded:
        invoice.charge_attempts += 1
        _settle(invoice, result.reference)
    else:
        _record_failed_charge(invoice, result.failure_reason)
    return invoice


def dunning_enqueue_due(*, now: datetime) -> int:
    """Queue a charge for every open invoice whose retry is due; return how many were queued.

    A charge still waiting or running from an earlier sweep is not queued again.
    """
    from apps.billing.tasks import charge_invoice

    due = Invoice.objects.filter(status=Invoice.Status.OPEN, next_charge_at__lte=now)
    queued = 0
    for invoice_id in due.values_list("pk", flat=True):
        task_id = str(uuid.uuid4())
        result = charge_invoice.apply_async((invoice_id,), task_id=task_id,
                                            dedup_key=f"charge:invoice:{invoice_id}")
        queued += result.id == task_id
    return queued


def invoices_generate_due(*, today: date) -> int:
    """Invoice every active subscription due by `today`; return how many were created.

    One invoice per subscription and period (a unique constraint), so running it twice,
    or concurrently, creates nothing twice.
    """
    created = 0
    due = Subscription.objects.filter(status=Subscription.Status.ACTIVE,
                                      next_billing_date__lte=today)
    for subscription_id in due.values_list("pk", flat=True):
        created += _invoice_next_period(subscription_id=subscription_id, today=today)
    return created


@transaction.atomic
def _invoice_next_period(*, subscription_id: int, today: date) -> int:
    from apps.billing.tasks import charge_invoice

    subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
    if subscription.next_billing_date > today:
        return 0
    start = subscription.next_billing_date
    end = _add_month(start)
    invoice, created = Invoice.objects.get_or_create(
        subscription=subscription, period_start=start,
        defaults={"number": f"INV-{subscription.pk}-{start:%Y%m%d}", "period_end": end,
                  "amount_cents": subscription.amount_cents, "currency": subscription.currency})
    subscription.next_billing_date = end
    subscription.save(update_fields=["next_billing_date"])
    if created:
        charge_invoice.delay_via_outbox(invoice.pk)
    return int(created)


def _record_failed_charge(invoice: Invoice, reason: str) -> None:
    """Count the failed attempt and plan the next retry, or give up and tell the customer."""
    invoice.charge_attempts += 1
    invoice.last_failure = reason[:2000]
    schedule = settings.BILLING_DUNNING_SCHEDULE_DAYS
    retries_done = invoice.charge_attempts - 1
    if retries_done < len(schedule):
        invoice.next_charge_at = timezone.now() + timedelta(days=schedule[retries_done])
    else:
        invoice.next_charge_at = None
        Subscription.objects.filter(pk=invoice.subscription_id).update(
            status=Subscription.Status.PAST_DUE)
        notification_request(
            kind=Kind.PAYMENT_FAILED, recipient=invoice.subscription.customer.email,
            subject=f"We could not collect payment for {invoice.number}",
            body=f"{_money(invoice)} could not be charged after {invoice.charge_attempts} "
                 "attempts. Please update your payment method to keep your subscription.",
            idempotency_key=f"payment-failed:invoice:{invoice.pk}")
    invoice.save(update_fields=["charge_attempts", "last_failure", "next_charge_at"])


def _settle(invoice: Invoice, reference: str) -> None:
    """Mark paid and queue the receipt, in the caller's transaction."""
    from apps.billing.tasks import send_payment_receipt

    invoice.status = Invoice.Status.PAID
    invoice.paid_at = timezone.now()
    invoice.payment_reference = reference
    invoice.next_charge_at = None
    invoice.save(update_fields=["status", "paid_at", "payment_reference", "next_charge_at",
                                "charge_attempts"])
    Subscription.objects.filter(pk=invoice.subscription_id,
                                status=Subscription.Status.PAST_DUE).update(
        status=Subscription.Status.ACTIVE)
    send_payment_receipt.delay_via_outbox(invoice.pk)


def _invoice(*, lock: bool, **lookup: Any) -> Invoice:
    """The invoice with its customer loaded (row-locked when asked), or a permanent error."""
    invoices = Invoice.objects.select_related("subscription__customer")
    if lock:
        invoices = invoices.select_for_update(of=("self",))
    try:
        return invoices.get(**lookup)
    except Invoice.DoesNotExist as exc:
        wanted = ", ".join(f"{field} {value!r}" for field, value in lookup.items())
        raise BillingRecordNotFound(f"no invoice with {wanted}") from exc


def _add_month(day: date) -> date:
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return day.replace(year=year, month=month,
                       day=min(day.day, calendar.monthrange(year, month)[1]))


def _money(invoice: Invoice) -> str:
    return f"{invoice.amount_cents / 100:.2f} {invoice.currency.upper()}"
