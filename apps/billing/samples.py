"""Stripe events built from Stripe's published example objects (`stripe_objects/`).

For `manage.py billing_demo` and the tests: an event has the envelope Stripe sends, the
pinned API version, and Stripe's example object with only the given fields replaced, so
what is processed has every field the real thing has.
"""

import copy
import json
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

OBJECTS = Path(__file__).with_name("stripe_objects")


@cache
def _example(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((OBJECTS / f"{kind}.json").read_text())
    return data


def stripe_object(kind: str, **fields: Any) -> dict[str, Any]:
    """Stripe's example `invoice`, `subscription`, `payment_intent` or `charge`, with
    `fields` set on it."""
    return copy.deepcopy(_example(kind)) | fields


def stripe_event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None,
                 created: int | None = None) -> dict[str, Any]:
    """The event as Stripe delivers it to a webhook endpoint."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": settings.STRIPE_API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def invoice_object(*, stripe_id: str, customer: str, subscription: str | None, status: str,
                   amount: int, attempt_count: int = 0, next_payment_attempt: int | None = None,
                   period: tuple[int, int] | None = None, number: str = "") -> dict[str, Any]:
    """An invoice of `amount` in USD, paid in full when its status is paid."""
    paid = status == "paid"
    start, end = period or (int(time.time()) - 30 * 86400, int(time.time()))
    parent = ({"type": "subscription_details", "quote_details": None,
               "subscription_details": {"metadata": {}, "subscription": subscription}}
              if subscription else None)
    return stripe_object(
        "invoice", id=stripe_id, customer=customer, status=status, number=number or None,
        amount_due=amount, amount_paid=amount if paid else 0,
        amount_remaining=0 if paid else amount, total=amount, subtotal=amount,
        currency="usd", attempt_count=attempt_count, attempted=attempt_count > 0,
        next_payment_attempt=next_payment_attempt, period_start=start, period_end=end,
        parent=parent, hosted_invoice_url=f"https://invoice.stripe.com/i/{stripe_id}",
        status_transitions={"finalized_at": start, "marked_uncollectible_at": None,
                            "paid_at": end if paid else None, "voided_at": None})


def subscription_object(*, stripe_id: str, customer: str, status: str, amount: int,
                        plan: str, period: tuple[int, int],
                        cancel_at_period_end: bool = False) -> dict[str, Any]:
    """A one-item monthly subscription to `plan` (the price's lookup key)."""
    example = _example("subscription")
    item = copy.deepcopy(example["items"]["data"][0])
    item["price"] |= {"lookup_key": plan, "unit_amount": amount,
                      "unit_amount_decimal": str(amount), "currency": "usd"}
    item |= {"subscription": stripe_id, "quantity": 1, "current_period_start": period[0],
             "current_period_end": period[1]}
    items = example["items"] | {"data": [item]}
    return stripe_object(
        "subscription", id=stripe_id, customer=customer, status=status, currency="usd",
        items=items, start_date=period[0], cancel_at_period_end=cancel_at_period_end,
        canceled_at=int(time.time()) if status == "canceled" else None,
        ended_at=int(time.time()) if status == "canceled" else None, cancel_at=None)


def payment_intent_object(*, stripe_id: str, customer: str | None, status: str, amount: int,
                          failure: str = "", metadata: dict[str, str] | None = None
                          ) -> dict[str, Any]:
    error = ({"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
              "message": failure} if failure else None)
    return stripe_object(
        "payment_intent", id=stripe_id, customer=customer, status=status, amount=amount,
        amount_received=amount if status == "succeeded" else 0, currency="usd",
        last_payment_error=error, metadata=metadata or {})


def charge_object(*, stripe_id: str, customer: str | None, payment_intent: str, amount: int,
                  amount_refunded: int) -> dict[str, Any]:
    return stripe_object(
        "charge", id=stripe_id, customer=customer, payment_intent=payment_intent,
        amount=amount, amount_captured=amount, amount_refunded=amount_refunded,
        refunded=amount_refunded == amount, captured=True, paid=True, status="succeeded",
        currency="usd")
