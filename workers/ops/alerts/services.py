"""Raise alerts (once per repeat window), turn ended windows into digests, deliver."""

import logging
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from workers.core.outbox import outbox_enqueue
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.shown import redacted_text
from workers.ops.alerts.channels import DeliveryError, configured_channels, send
from workers.ops.alerts.models import Alert
from workers.ops.alerts.windows import window_open_or_count, windows_close_due

logger = logging.getLogger(__name__)

FAILURE_KEY = "failure:"
# A failure alert goes out through the delivery task at once; the periodic sweep takes it only
# if that has not happened by then (the critical pool is down, say).
SWEEP_GRACE = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)


def alert_raise(*, kind: str, key: str, title: str, text: str, link: str = "",
                deliver_now: bool = False) -> Alert | None:
    """The alert, if this occurrence opened a repeat window; else None (counted)."""
    if not window_open_or_count(key=key):
        return None
    from workers.ops.alerts.tasks import deliver_alert

    now = timezone.now()
    with transaction.atomic():
        alert = Alert.objects.create(kind=kind, key=key, title=title[:255], text=text,
                                     link=link, next_attempt_at=now if deliver_now
                                     else now + SWEEP_GRACE)
        if not deliver_now:
            outbox_enqueue(task_name=deliver_alert.name, args=[alert.pk])
    logger.warning("alert: %s", title)
    if deliver_now:
        alert_deliver(alert_id=alert.pk)
    return alert


def alert_on_dead_letter(*, dead_letter_id: int) -> Alert | None:
    """A new dead letter alerts if its fingerprint has no open window."""
    row = DeadLetter.objects.get(pk=dead_letter_id)
    # Called where the row was stored: often a worker's main process (a lost worker, a
    # poison message), which must not import its tasks again.
    message = redacted_text(row=row, text=row.message, discover=False)
    exception = row.exception_type.rpartition(".")[2]
    return alert_raise(
        kind=Alert.Kind.FAILURE, key=FAILURE_KEY + row.fingerprint,
        title=f"New failure: {row.task_name or 'unknown task'} raised {exception}",
        text=(f"{message[:1000]}\nqueue {row.queue or '?'}, "
              f"{row.attempts} attempt(s), worker {row.worker or '?'}; "
              f"similar failures are counted for {settings.ALERTS_REPEAT_MINUTES:g} minutes "
              "and sent as one digest."),
        link=dead_letters_link(fingerprint=row.fingerprint))


def dead_letters_link(*, fingerprint: str) -> str:
    """The admin's dead-letter list filtered to one fingerprint's open rows."""
    query = urlencode({"fingerprint": fingerprint, "status__exact": DeadLetter.Status.NEW})
    return (f"{settings.ALERTS_BASE_URL.rstrip('/')}"
            f"{reverse('admin:workers_deadletter_changelist')}?{query}")


def alerts_flush_digests(*, now: datetime) -> list[Alert]:
    """One digest per window that ended with repeats, delivered by the caller's sweep."""
    digests = []
    for key, repeats in windows_close_due(now=now.timestamp()).items():
        if not repeats:
            continue
        first = Alert.objects.filter(key=key).exclude(kind=Alert.Kind.DIGEST).first()
        title = first.title if first else key
        digests.append(Alert.objects.create(
            kind=Alert.Kind.DIGEST, key=key, title=f"Repeats: {title}", repeats=repeats,
            text=f"{repeats} more in the last {settings.ALERTS_REPEAT_MINUTES:g} minutes.",
            link=first.link if first else "", next_attempt_at=now))
    return digests


def alert_deliver(*, alert_id: int) -> bool:
    """Send one alert to every configured channel it has not reached yet; True once it has
    reached them all. The row is locked while sending, so two deliverers never both send;
    a failed channel leaves the row for a retry after a backoff. With no channel at all the
    alert is only logged, and marked so: the admin must not show it as delivered."""
    error = ""
    with transaction.atomic():
        alert = (Alert.objects.select_for_update(skip_locked=True)
                 .filter(pk=alert_id, status=Alert.Status.PENDING).first())
        if alert is None:
            return False  # delivered already, or being delivered right now
        channels = configured_channels()
        if not channels:
            logger.warning("alert (no ALERTS_SLACK_WEBHOOK_URL or ALERTS_EMAIL_TO set): "
                           "%s\n%s\n%s", alert.title, alert.text, alert.link)
            alert.status = Alert.Status.NO_CHANNEL
            alert.attempts += 1
            alert.save(update_fields=["status", "attempts"])
            return False
        for channel in channels:
            if channel in alert.delivered_to:
                continue
            try:
                send(channel, alert)
            except DeliveryError as exc:
                error = str(exc)
                continue
            alert.delivered_to = [*alert.delivered_to, channel]
        now = timezone.now()
        alert.attempts += 1
        if error:
            alert.last_error = error
            alert.next_attempt_at = now + min(MAX_BACKOFF, timedelta(
                seconds=30 * 2 ** min(alert.attempts, 10)))
        else:
            alert.status = Alert.Status.DELIVERED
            alert.delivered_at = now
        alert.save(update_fields=["delivered_to", "attempts", "last_error", "next_attempt_at",
                                  "status", "delivered_at"])
    if error:
        logger.warning("alert %s not delivered (attempt %d, retried at %s): %s", alert.pk,
                       alert.attempts, alert.next_attempt_at.isoformat(), error)
    return not error


def alerts_deliver_pending(*, now: datetime) -> int:
    """Deliver every alert due for a (re)try; return how many went out."""
    due = (Alert.objects.filter(status=Alert.Status.PENDING, next_attempt_at__lte=now)
           .order_by("pk").values_list("pk", flat=True))
    return sum(alert_deliver(alert_id=pk) for pk in due)
