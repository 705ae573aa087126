"""Payment events: store once, process once."""

from django.db import transaction
from django.utils import timezone

from apps.billing.models import PaymentEvent
from workers.exceptions import PermanentError


class PaymentEventNotFound(PermanentError):
    """The event row is gone: there is nothing to process."""


@transaction.atomic
def payment_event_store(*, event_id: str, type: str, payload: dict) -> PaymentEvent:
    """Keep the provider's event and process it after commit; a resend is a no-op."""
    from apps.billing.tasks import process_payment_event

    event, created = PaymentEvent.objects.get_or_create(
        event_id=event_id, defaults={"type": type, "payload": payload}
    )
    if created:
        process_payment_event.delay_on_commit(event.pk)
    return event


@transaction.atomic
def payment_event_process(*, payment_event_id: int) -> PaymentEvent:
    """Mark the event processed exactly once, however often the job is delivered."""
    try:
        event = PaymentEvent.objects.select_for_update().get(pk=payment_event_id)
    except PaymentEvent.DoesNotExist as exc:
        raise PaymentEventNotFound(f"payment event {payment_event_id} does not exist") from exc
    if event.processed_at is None:
        event.processed_at = timezone.now()
        event.save(update_fields=["processed_at"])
    return event
