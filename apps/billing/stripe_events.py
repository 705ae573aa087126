"""Stripe events: checked, stored once, processed once, each ending with one outcome.

processed: applied (or found stale: the row already holds newer state; `detail` says so).
ignored: a type this app does not handle. unmatched: about a customer or payment not known
here. failed: processing raised; the job is in the dead-letter table, and a replay that
succeeds processes the event again.
"""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from apps.billing import mirror
from apps.billing.models import Invoice, Payment, PaymentEvent
from apps.billing.services import invoice_notify_payment_failed, invoice_settle
from workers.core.exceptions import PermanentError
from workers.core.json_input import JSONInputError, parse_json

logger = logging.getLogger(__name__)

# Stripe's objects nest about ten deep inside an event (an invoice's lines and parents);
# the margin is for fields a later API version adds.
EVENT_MAX_DEPTH = 32
# `created` must name a moment this app can store, order and read back: not before 2000
# (Stripe's first events are from 2011), and at most a day ahead of this server's clock
# (skew). A future time would also make every later event of the object look stale.
EARLIEST_CREATED = datetime(2000, 1, 1, tzinfo=UTC)
CREATED_MAX_AHEAD = timedelta(days=1)
# Versions read like 2026-10-28.endive; the cap keeps a refusal's log line and reply short.
API_VERSION_MAX_LENGTH = 64


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
        event = parse_json(raw, max_depth=EVENT_MAX_DEPTH,
                           max_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    except JSONInputError as exc:
        raise MalformedEvent(str(exc)) from None
    if not isinstance(event, dict):
        raise MalformedEvent("body must be a JSON object")
    for field, limit in (("id", _column_length("event_id")), ("type", _column_length("type")),
                         ("api_version", API_VERSION_MAX_LENGTH)):
        _check_string(event.get(field), name=field, limit=limit)
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise MalformedEvent("'created' must be a Unix timestamp")
    latest = time.time() + CREATED_MAX_AHEAD.total_seconds()
    if not EARLIEST_CREATED.timestamp() <= created <= latest:
        raise MalformedEvent(f"'created' must lie between {EARLIEST_CREATED:%Y-%m-%d} and a "
                             f"day from now")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEvent("'data.object' must be an object")
    if data["object"].get("id") is not None:
        _check_string(data["object"]["id"], name="data.object.id",
                      limit=_column_length("object_id"))
    if event["api_version"] != settings.STRIPE_API_VERSION:
        logger.warning(
            "refused Stripe event %s (%s): API version %s is not STRIPE_API_VERSION %s; "
            "set the webhook endpoint's API version to %s in Stripe",
            event["id"], event["type"], event["api_version"], settings.STRIPE_API_VERSION,
            settings.STRIPE_API_VERSION)
        raise MalformedEvent(f"API version {event['api_version']} is not the pinned "
                             f"{settings.STRIPE_API_VERSION} (STRIPE_API_VERSION)")
    return event


def _check_string(value: Any, *, name: str, limit: int) -> None:
    """A non-empty string that fits its column: a longer one would fail the insert."""
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise MalformedEvent(f"'{name}' must be a non-empty string of at most {limit} "
                             f"characters")


def _column_length(name: str) -> int:
    field = PaymentEvent._meta.get_field(name)
    if not isinstance(field, models.CharField) or field.max_length is None:
        raise TypeError(f"PaymentEvent.{name} is not a text column of bounded length")
    return field.max_length


@transaction.atomic
def payment_event_store(*, event: dict[str, Any]) -> tuple[PaymentEvent, bool]:
    """Keep the event and its processing job together; a redelivered event is stored once.

    The job goes through the outbox: if the event is stored, it will be processed, even
    when the process dies right after the commit or Redis is down at that moment.
    """
    from apps.billing.tasks import process_payment_event

    stored, created = PaymentEvent.objects.get_or_create(event_id=event["id"], defaults={
        "type": event["type"], "payload": event,
        "object_id": event["data"]["object"].get("id") or "",
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
