"""Stripe events: checked, stored once, processed once, each ending with one outcome.

processed: applied (or found stale: the row already holds newer state; `detail` says so).
ignored: a type this app does not handle. unmatched: about a customer or payment not known
here. failed: processing raised; the job is in the dead-letter table, and a replay that
succeeds processes the event again.
"""

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.billing import mirror
from apps.billing.models import Invoice, Payment, PaymentEvent
from apps.billing.services import invoice_notify_payment_failed, invoice_settle
from workers.api.exceptions import PermanentError

logger = logging.getLogger(__name__)


class MalformedEvent(ValueError):
    """The webhook body is not an event this endpoint accepts; the reason says why."""


class PaymentEventNotFound(PermanentError):
    """A job names an event that does not exist."""


def payment_event_parse(*, raw: bytes) -> dict[str, Any]:
    """The event as a dict, or MalformedEvent saying what is wrong with it.

    An event of another API version than STRIPE_API_VERSION is refused: its objects may
    have other fields, and reading them as ours would mirror wrong state. Stripe keeps
    retrying a refused delivery for three days, so nothing is lost while the endpoint's
    version is put right.
    """
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise MalformedEvent("body must be a JSON object")
    for field in ("id", "type", "api_version"):
        if not isinstance(event.get(field), str) or not event[field]:
            raise MalformedEvent(f"'{field}' must be a non-empty string")
    if not isinstance(event.get("created"), int) or isinstance(event["created"], bool):
        raise MalformedEvent("'created' must be a Unix timestamp")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEvent("'data.object' must be an object")
    if event["api_version"] != settings.STRIPE_API_VERSION:
        logger.warning(
            "refused Stripe event %s (%s): API version %s is not STRIPE_API_VERSION %s; "
            "set the webhook endpoint's API version to %s in Stripe",
            event["id"], event["type"], event["api_version"], settings.STRIPE_API_VERSION,
            settings.STRIPE_API_VERSION)
        raise MalformedEvent(f"API version {event['api_version']} is not the pinned "
                             f"{settings.STRIPE_API_VERSION} (STRIPE_API_VERSION)")
    return event


@transaction.atomic
def payment_event_store(*, event: dict[str, Any]) -> tuple[PaymentEvent, bool]:
    """Keep the event and its processing job together; a redelivered event is stored once.

    The job goes through the outbox: if the event is stored, it will be processed, even
    when the process dies right after the commit or Redis is down at that moment.
    """
    from apps.billing.tasks import process_payment_event

    stored, created = PaymentEvent.objects.get_or_create(event_id=event["id"], defaults={
        "type": event["type"], "payload": event,
        "object_id": str(event["data"]["object"].get("id") or "")[:255],
        "created": datetime.fromtimestamp(event["created"], tz=UTC)})
    if created:
        process_payment_event.delay_via_outbox(stored.pk)
    return stored, created


@transaction.atomic
def payment_event_process(*, payment_event_id: int) -> PaymentEvent:
    """Apply the event once. A pending event, or a failed one being replayed, is processed;
    any other outcome is final and a repeated job changes nothing."""
    try:
        event = PaymentEvent.objects.select_for_update().get(pk=payment_event_id)
    except PaymentEvent.DoesNotExist as exc:
        raise PaymentEventNotFound(f"payment event {payment_event_id} does not exist") from exc
    if event.outcome not in (PaymentEvent.Outcome.PENDING, PaymentEvent.Outcome.FAILED):
        return event
    handler = EVENT_HANDLERS.get(event.type)
    event.detail = ""
    if handler is None:
        event.outcome = PaymentEvent.Outcome.IGNORED
    else:
        try:
            with transaction.atomic():  # an unmatched event leaves no row half-written
                event.detail = handler(event.payload["data"]["object"], event.created)
        except mirror.Unmatched as exc:
            event.outcome, event.detail = PaymentEvent.Outcome.UNMATCHED, str(exc)
        else:
            event.outcome = PaymentEvent.Outcome.PROCESSED
    event.processed_at = timezone.now()
    event.save(update_fields=["outcome", "detail", "processed_at"])
    return event


def payment_event_mark_failed(*, payment_event_id: int) -> None:
    """Its job is in the dead-letter table; a processed event (a replay won) stays so."""
    PaymentEvent.objects.filter(pk=payment_event_id, outcome=PaymentEvent.Outcome.PENDING
                                ).update(outcome=PaymentEvent.Outcome.FAILED,
                                         processed_at=timezone.now())


@transaction.atomic
def payment_events_reprocess(*, payment_event_ids: list[int]) -> int:
    """Process unmatched events again (once the missing customer exists); return how many."""
    from apps.billing.tasks import process_payment_event

    ids = list(PaymentEvent.objects.select_for_update().filter(
        pk__in=payment_event_ids, outcome=PaymentEvent.Outcome.UNMATCHED
    ).values_list("pk", flat=True))
    PaymentEvent.objects.filter(pk__in=ids).update(outcome=PaymentEvent.Outcome.PENDING,
                                                   detail="", processed_at=None)
    for payment_event_id in ids:
        process_payment_event.delay_via_outbox(payment_event_id)
    return len(ids)


def _invoice_paid(obj: dict[str, Any], created: datetime) -> str:
    applied = mirror.invoice_mirror(obj=obj, event_created=created)
    if applied.row.status == Invoice.Status.PAID:
        invoice_settle(invoice_id=applied.row.pk)
    return applied.stale


def _invoice_payment_failed(obj: dict[str, Any], created: datetime) -> str:
    """Stripe retries the charge (Smart Retries); the customer hears of each attempt once."""
    applied = mirror.invoice_mirror(obj=obj, event_created=created)
    if not applied.stale and applied.row.status == Invoice.Status.OPEN:
        invoice_notify_payment_failed(invoice_id=applied.row.pk)
    return applied.stale


def _payment_intent(obj: dict[str, Any], created: datetime) -> str:
    applied = mirror.payment_mirror(obj=obj, event_created=created)
    if applied.row.status == Payment.Status.SUCCEEDED and applied.row.invoice_id is not None:
        # The app's own charge, settled here when its request timed out but Stripe charged.
        invoice_settle(invoice_id=applied.row.invoice_id)
    return applied.stale


def _mirror_only(apply: Callable[..., mirror.Applied]) -> Callable[[dict[str, Any], datetime],
                                                                  str]:
    return lambda obj, created: apply(obj=obj, event_created=created).stale


# The types to enable on the Stripe webhook endpoint (the README lists them from here).
EVENT_HANDLERS: dict[str, Callable[[dict[str, Any], datetime], str]] = {
    "customer.subscription.created": _mirror_only(mirror.subscription_mirror),
    "customer.subscription.updated": _mirror_only(mirror.subscription_mirror),
    "customer.subscription.deleted": _mirror_only(mirror.subscription_mirror),
    "invoice.finalized": _mirror_only(mirror.invoice_mirror),
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
    "invoice.marked_uncollectible": _mirror_only(mirror.invoice_mirror),
    "invoice.voided": _mirror_only(mirror.invoice_mirror),
    "payment_intent.succeeded": _payment_intent,
    "payment_intent.payment_failed": _payment_intent,
    "payment_intent.canceled": _payment_intent,
    "charge.refunded": _mirror_only(mirror.refund_mirror),
}
