"""Where alerts go: a Slack-compatible incoming webhook, and email."""

import json
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import send_mail

from workers.ops.alerts.models import Alert


class DeliveryError(Exception):
    """A channel refused or could not be reached; the alert is retried later."""


def configured_channels() -> list[str]:
    return [name for name, on in (("slack", settings.ALERTS_SLACK_WEBHOOK_URL),
                                  ("email", settings.ALERTS_EMAIL_TO)) if on]


def send(channel: str, alert: Alert) -> None:
    if channel == "slack":
        _post_webhook(settings.ALERTS_SLACK_WEBHOOK_URL, alert)
    elif channel == "email":
        _email(alert)
    else:
        raise ValueError(f"unknown alert channel {channel!r}")


def _post_webhook(url: str, alert: Alert) -> None:
    """Slack's incoming-webhook payload (Mattermost, Rocket.Chat and Teams' Slack-compatible
    hooks take the same): one `text` in Slack's markup."""
    text = f"*{alert.title}*\n{alert.text}"
    if alert.link:
        text += f"\n<{alert.link}|Open in the admin>"
    request = urllib.request.Request(  # noqa: S310  # the operator's own https URL
        url, data=json.dumps({"text": text}).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=settings.ALERTS_HTTP_TIMEOUT):  # noqa: S310
            pass
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"webhook: {exc}") from exc


def _email(alert: Alert) -> None:
    body = alert.text + (f"\n\n{alert.link}" if alert.link else "")
    try:
        send_mail(subject=f"[alert] {alert.title}", message=body,
                  from_email=settings.DEFAULT_FROM_EMAIL,
                  recipient_list=settings.ALERTS_EMAIL_TO)
    except OSError as exc:  # smtplib's errors are OSErrors
        raise DeliveryError(f"email: {exc}") from exc
