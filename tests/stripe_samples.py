"""Stripe objects the tests need beyond the invoice `billing_demo` uses: subscriptions,
PaymentIntents and charges, each Stripe's published example with the given fields set."""

import copy
import time
from typing import Any

from apps.billing.samples import stripe_object


def subscription_object(*, stripe_id: str, customer: str, status: str, amount: int,
                        plan: str, period: tuple[int, int],
                        cancel_at_period_end: bool = False) -> dict[str, Any]:
    """A one-item monthly subscription to `plan` (the price's lookup key)."""
    example = stripe_object("subscription")
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
