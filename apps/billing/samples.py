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
