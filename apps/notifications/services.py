"""Sending transactional email: request it inside a transaction, send it from a worker."""

import smtplib

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from apps.notifications.models import Notification
from workers.exceptions import PermanentError, TransientError


class NotificationNotFound(PermanentError):
    """The row was deleted (or never committed): nothing to send."""


class RecipientRefused(PermanentError):
    """The mail server refused the address; retrying will not change its mind."""


class MailServerUnavailable(TransientError):
    """The mail server timed out or is busy; try again later."""


@transaction.atomic
def notification_request(*, kind: str, recipient: str, subject: str, body: str,
                         idempotency_key: str) -> Notification:
    """Record the message and send it after commit; a repeated key returns the first row."""
    from apps.notifications.tasks import send_notification

    notification, created = Notification.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={"kind": kind, "recipient": recipient, "subject": subject, "body": body},
    )
    if created:
        send_notification.delay_on_commit(notification.pk)
    return notification


@transaction.atomic
def notification_send(*, notification_id: int) -> Notification:
    """Send a pending notification once; a redelivered job finds it sent and stops.

    The row lock serialises two workers handed the same job, so the message goes out once.
    """
    try:
        notification = Notification.objects.select_for_update().get(pk=notification_id)
    except Notification.DoesNotExist as exc:
        raise NotificationNotFound(f"notification {notification_id} does not exist") from exc
    if notification.status == Notification.Status.SENT:
        return notification
    notification.attempts += 1
    try:
        send_mail(notification.subject, notification.body, None, [notification.recipient])
    except smtplib.SMTPRecipientsRefused as exc:
        raise RecipientRefused(str(exc)) from exc
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, TimeoutError) as exc:
        raise MailServerUnavailable(str(exc)) from exc
    notification.status = Notification.Status.SENT
    notification.sent_at = timezone.now()
    notification.save(update_fields=["status", "sent_at", "attempts"])
    return notification
