"""Billing operations: receipts and failed-payment notices, and the app's own invoicing.

Who runs dunning: for a subscription billed by Stripe (it has a `stripe_id`), Stripe
invoices, charges and retries (Smart Retries); the app only mirrors its events and tells
the customer. The invoicing, charging and retry schedule below run only for subscriptions
the app bills itself through PaymentIntents (no `stripe_id`), so with Stripe Billing they
find nothing to do.
"""

import calendar
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.billing import gateway
from apps.billing.models import Invoice, Payment, Subscription
from apps.notifications.models import Kind
from apps.notifications.services import notification_request
from workers.core.exceptions import PermanentError


class BillingRecordNotFound(PermanentError):
    """A job names an invoice that does not exist."""


@transaction.atomic
def invoice_settle(*, invoice_id: int) -> Invoice:
    """Mark an invoice the app bills paid if it is still open; for any paid invoice, request
    its receipt in this transaction (once: the notification's key names the invoice)."""
    invoice = _invoice(lock=True, pk=invoice_id)
    if invoice.stripe_id is None and invoice.status == Invoice.Status.OPEN:
        invoice.status = Invoice.Status.PAID
        invoice.amount_paid, invoice.amount_remaining = invoice.amount_due, 0
        invoice.paid_at = timezone.now()
        invoice.next_payment_attempt = None
        invoice.save(update_fields=["status", "amount_paid", "amount_remaining", "paid_at",
                                    "next_payment_attempt"])
        Subscription.objects.filter(invoices=invoice, stripe_id__isnull=True,
                                    status=Subscription.Status.PAST_DUE).update(
            status=Subscription.Status.ACTIVE)
    if invoice.status == Invoice.Status.PAID:
        invoice_send_receipt(invoice_id=invoice.pk)
    return invoice


def invoice_send_receipt(*, invoice_id: int) -> None:
    """Request the receipt; its idempotency key makes a repeated settlement send nothing new."""
    invoice = _invoice(lock=False, pk=invoice_id)
    notification_request(
        kind=Kind.PAYMENT_RECEIPT, recipient=invoice.customer.email,
        subject=f"Receipt for {invoice}",
        body=f"We received {_money(invoice.amount_paid, invoice.currency)} for {_what(invoice)}"
             f", {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}. Thank you.",
        idempotency_key=f"receipt:invoice:{invoice.pk}")


def invoice_notify_payment_failed(*, invoice_id: int) -> None:
    """Tell the customer a charge failed, once per attempt, and when the next one is."""
    invoice = _invoice(lock=False, pk=invoice_id)
    if invoice.next_payment_attempt:
        then = f"We will try again on {invoice.next_payment_attempt:%Y-%m-%d}."
    else:
        then = "That was the last attempt."
    update = (f" Update your payment method at {invoice.hosted_invoice_url}"
              if invoice.hosted_invoice_url else
              " Please update your payment method to keep your subscription.")
    notification_request(
        kind=Kind.PAYMENT_FAILED, recipient=invoice.customer.email,
        subject=f"We could not collect payment for {invoice}",
        body=f"Charging {_money(invoice.amount_remaining or invoice.amount_due, invoice.currency)}"
             f" for {_what(invoice)} failed (attempt {invoice.attempt_count}). {then}{update}",
        idempotency_key=f"payment-failed:invoice:{invoice.pk}:attempt:{invoice.attempt_count}")


@transaction.atomic
def invoice_charge(*, invoice_id: int) -> Invoice:
    """Charge an open invoice the app bills, if it is due; a decline plans the next retry.

    The row lock makes concurrent duplicates wait and then find the invoice settled or
    rescheduled; the idempotency key per attempt makes a retried request charge once.
    """
    invoice = _invoice(lock=True, pk=invoice_id)
    due = invoice.next_payment_attempt is None or invoice.next_payment_attempt <= timezone.now()
    if invoice.stripe_id is not None or invoice.status != Invoice.Status.OPEN or not due:
        return invoice
    attempt = invoice.attempt_count + 1
    result = gateway.charge(
        customer_id=invoice.customer.stripe_id or "", amount_cents=invoice.amount_due,
        currency=invoice.currency, description=f"Invoice {invoice}",
        metadata={"invoice_id": str(invoice.pk)},
        idempotency_key=f"invoice-{invoice.pk}-attempt-{attempt}")
    invoice.attempt_count = attempt
    invoice.save(update_fields=["attempt_count"])
    if result.reference:
        Payment.objects.update_or_create(stripe_id=result.reference, defaults={
            "customer": invoice.customer, "invoice": invoice, "status": result.status,
            "amount": invoice.amount_due, "currency": invoice.currency,
            "amount_received": invoice.amount_due if result.succeeded else 0,
            "last_failure": result.failure_reason})
    if result.succeeded:
        return invoice_settle(invoice_id=invoice.pk)
    _record_failed_charge(invoice, result.failure_reason)
    return invoice


def dunning_enqueue_due(*, now: datetime) -> int:
    """Queue a charge for every open invoice of the app's own whose retry is due; return how
    many were queued. A charge still waiting or running from an earlier sweep is not queued
    again. Stripe's invoices are Stripe's to retry."""
    from apps.billing.tasks import charge_invoice

    due = Invoice.objects.filter(status=Invoice.Status.OPEN, stripe_id__isnull=True,
                                 next_payment_attempt__lte=now)
    queued = 0
    for invoice_id in due.values_list("pk", flat=True):
        task_id = str(uuid.uuid4())
        result = charge_invoice.apply_async((invoice_id,), task_id=task_id,
                                            dedup_key=f"charge:invoice:{invoice_id}")
        queued += result.id == task_id
    return queued


def invoices_generate_due(*, now: datetime) -> int:
    """Invoice every active subscription the app bills whose period has ended; return how
    many were created.

    One invoice per subscription and period (a unique constraint), so running it twice,
    or concurrently, creates nothing twice.
    """
    created = 0
    due = Subscription.objects.filter(status=Subscription.Status.ACTIVE,
                                      stripe_id__isnull=True, current_period_end__lte=now)
    for subscription_id in due.values_list("pk", flat=True):
        created += _invoice_next_period(subscription_id=subscription_id, now=now)
    return created


@transaction.atomic
def _invoice_next_period(*, subscription_id: int, now: datetime) -> int:
    from apps.billing.tasks import charge_invoice

    subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
    if subscription.current_period_end > now:
        return 0
    start = subscription.current_period_end
    end = _add_month(start)
    invoice, created = Invoice.objects.get_or_create(
        subscription=subscription, period_start=start, stripe_id=None,
        defaults={"customer_id": subscription.customer_id,
                  "number": f"INV-{subscription.pk}-{start:%Y%m%d}", "period_end": end,
                  "amount_due": subscription.amount_cents,
                  "amount_remaining": subscription.amount_cents,
                  "currency": subscription.currency})
    subscription.current_period_start, subscription.current_period_end = start, end
    subscription.save(update_fields=["current_period_start", "current_period_end"])
    if created:
        charge_invoice.delay_via_outbox(invoice.pk)
    return int(created)


def _record_failed_charge(invoice: Invoice, reason: str) -> None:
    """Plan the next retry, or give up and mark the subscription past due; either way the
    customer hears of this attempt."""
    invoice.last_failure = reason[:2000]
    schedule = settings.BILLING_DUNNING_SCHEDULE_DAYS
    retries_done = invoice.attempt_count - 1
    if retries_done < len(schedule):
        invoice.next_payment_attempt = timezone.now() + timedelta(days=schedule[retries_done])
    else:
        invoice.next_payment_attempt = None
        Subscription.objects.filter(invoices=invoice).update(
            status=Subscription.Status.PAST_DUE)
    invoice.save(update_fields=["last_failure", "next_payment_attempt"])
    invoice_notify_payment_failed(invoice_id=invoice.pk)


def _invoice(*, lock: bool, **lookup: int) -> Invoice:
    """The invoice with its customer loaded (row-locked when asked), or a permanent error."""
    invoices = Invoice.objects.select_related("customer", "subscription")
    if lock:
        invoices = invoices.select_for_update(of=("self",))
    try:
        return invoices.get(**lookup)
    except Invoice.DoesNotExist as exc:
        wanted = ", ".join(f"{field} {value!r}" for field, value in lookup.items())
        raise BillingRecordNotFound(f"no invoice with {wanted}") from exc


def _add_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month,
                          day=min(moment.day, calendar.monthrange(year, month)[1]))


def _what(invoice: Invoice) -> str:
    return invoice.subscription.plan if invoice.subscription else "your invoice"


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency.upper()}"
