"""Stripe's objects applied to the local rows: newest event wins, repeats change nothing.

Stripe does not deliver events in order and retries a delivery for up to three days, so
each mirrored row keeps the `created` time of the newest event applied to it, and an older
event leaves it as it is. Two events of the same second are applied in the order they are
processed, except that a paid or void invoice is never reopened (Stripe never does).

Every handler first locks the customer's row: the events of one customer are applied one
at a time, so two workers cannot both create the same new subscription or invoice. An
object whose customer is not known here raises `Unmatched`; the event is kept as such.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from apps.billing.models import Customer, Invoice, Payment, Subscription

Row = TypeVar("Row", Subscription, Invoice, Payment)
FINAL_INVOICE_STATUSES = (Invoice.Status.PAID, Invoice.Status.VOID)


class Unmatched(Exception):  # an outcome, not a failure
    """The event is about an object this app does not know (another product's customer)."""


@dataclass(frozen=True)
class Applied(Generic[Row]):
    """The row after the event; `stale` says why it was left as it was, if it was."""

    row: Row
    stale: str = ""


def subscription_mirror(*, obj: dict[str, Any], event_created: datetime
                        ) -> Applied[Subscription]:
    customer = _customer(obj["customer"])
    subscription = Subscription.objects.filter(stripe_id=obj["id"]).first()
    if subscription is not None and (stale := _stale(subscription.stripe_event_created,
                                                     event_created)):
        return Applied(subscription, stale)
    items = obj["items"]["data"]
    price = items[0]["price"] if items else {}
    fields = {
        "customer": customer,
        "plan": price.get("lookup_key") or price.get("nickname") or price.get("id") or "",
        "amount_cents": sum((item["price"].get("unit_amount") or 0) * (item.get("quantity") or 1)
                            for item in items),
        "currency": obj["currency"],
        "status": obj["status"],
        # Since API version 2025-03-31 the billing period is per item.
        "current_period_start": _time(min((i["current_period_start"] for i in items),
                                          default=None)),
        "current_period_end": _time(max((i["current_period_end"] for i in items),
                                        default=obj["start_date"])),
        "cancel_at_period_end": bool(obj.get("cancel_at_period_end")),
        "canceled_at": _time(obj.get("canceled_at")),
        "stripe_event_created": event_created,
    }
    return Applied(_save(Subscription, subscription, stripe_id=obj["id"], fields=fields))


def invoice_mirror(*, obj: dict[str, Any], event_created: datetime) -> Applied[Invoice]:
    customer = _customer(obj["customer"])
    invoice = Invoice.objects.filter(stripe_id=obj["id"]).first()
    if invoice is not None:
        if stale := _stale(invoice.stripe_event_created, event_created):
            return Applied(invoice, stale)
        if invoice.status in FINAL_INVOICE_STATUSES and obj["status"] != invoice.status:
            return Applied(invoice, f"invoice is {invoice.status}, which Stripe never "
                                    f"changes; the event says {obj['status']}")
    subscription_id = ((obj.get("parent") or {}).get("subscription_details") or {}).get(
        "subscription")
    fields = {
        "customer": customer,
        "subscription": Subscription.objects.filter(stripe_id=subscription_id).first()
        if subscription_id else None,
        "number": obj.get("number") or "",
        "status": obj["status"],
        "amount_due": obj["amount_due"],
        "amount_paid": obj["amount_paid"],
        "amount_remaining": obj["amount_remaining"],
        "currency": obj["currency"],
        "period_start": _time(obj["period_start"]),
        "period_end": _time(obj["period_end"]),
        "attempt_count": obj["attempt_count"],
        "next_payment_attempt": _time(obj.get("next_payment_attempt")),
        "hosted_invoice_url": obj.get("hosted_invoice_url") or "",
        "paid_at": _time((obj.get("status_transitions") or {}).get("paid_at")),
        "stripe_event_created": event_created,
    }
    return Applied(_save(Invoice, invoice, stripe_id=obj["id"], fields=fields))


def payment_mirror(*, obj: dict[str, Any], event_created: datetime) -> Applied[Payment]:
    """A PaymentIntent. One the app created to charge its own invoice names it in its
    metadata (`invoice_id`), which links the payment to that invoice."""
    if not obj.get("customer"):
        raise Unmatched(f"payment intent {obj['id']} has no customer")
    customer = _customer(obj["customer"])
    payment = Payment.objects.filter(stripe_id=obj["id"]).first()
    if payment is not None and (stale := _stale(payment.stripe_event_created, event_created)):
        return Applied(payment, stale)
    error = obj.get("last_payment_error") or {}
    fields = {
        "customer": customer,
        "status": obj["status"],
        "amount": obj["amount"],
        "amount_received": obj["amount_received"],
        "currency": obj["currency"],
        "last_failure": error.get("message") or error.get("code") or "",
        "stripe_event_created": event_created,
    }
    invoice_id = (obj.get("metadata") or {}).get("invoice_id")
    if invoice_id:
        fields["invoice"] = Invoice.objects.filter(
            pk=int(invoice_id), customer=customer, stripe_id__isnull=True).first()
    return Applied(_save(Payment, payment, stripe_id=obj["id"], fields=fields))


def refund_mirror(*, obj: dict[str, Any], event_created: datetime) -> Applied[Payment]:
    """A charge's refunded amount, on the payment (PaymentIntent) it belongs to."""
    if obj.get("customer"):
        _customer(obj["customer"])
    payment = Payment.objects.select_for_update().filter(
        stripe_id=obj.get("payment_intent") or "").first()
    if payment is None:
        raise Unmatched(f"charge {obj['id']} belongs to payment intent "
                        f"{obj.get('payment_intent')!r}, which is not known here")
    if stale := _stale(payment.refund_event_created, event_created):
        return Applied(payment, stale)
    payment.amount_refunded = obj["amount_refunded"]
    payment.refund_event_created = event_created
    payment.save(update_fields=["amount_refunded", "refund_event_created"])
    return Applied(payment)


def _customer(stripe_id: str) -> Customer:
    customer = Customer.objects.select_for_update().filter(stripe_id=stripe_id).first()
    if customer is None:
        raise Unmatched(f"customer {stripe_id} is not known here")
    return customer


def _stale(applied: datetime | None, event_created: datetime) -> str:
    """Why an event older than the newest one applied changes nothing; "" if it is not."""
    if applied is None or event_created >= applied:
        return ""
    return (f"stale: the row already has an event of {applied.isoformat()}, "
            f"this one is of {event_created.isoformat()}")


def _save(model: type[Row], row: Row | None, *, stripe_id: str, fields: dict[str, Any]) -> Row:
    """The row found before (locked by its customer's lock) updated, or a new one."""
    if row is None:
        return model.objects.create(stripe_id=stripe_id, **fields)
    for name, value in fields.items():
        setattr(row, name, value)
    row.save(update_fields=list(fields))
    return row


def _time(timestamp: int | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC)
