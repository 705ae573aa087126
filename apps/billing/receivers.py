"""Billing's answer to platform signals, connected in `BillingConfig.ready()`."""

from typing import Any

from apps.billing.stripe_events import payment_event_mark_failed
from apps.billing.tasks import process_payment_event


def mark_event_failed(sender: str, args: list[Any], kwargs: dict[str, Any], **_: Any) -> None:
    """An event whose processing job was dead-lettered ends with the outcome `failed`."""
    if sender != process_payment_event.name:
        return
    payment_event_id = args[0] if args else kwargs.get("payment_event_id")
    if isinstance(payment_event_id, int):
        payment_event_mark_failed(payment_event_id=payment_event_id)
