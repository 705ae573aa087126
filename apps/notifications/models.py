"""Messages the product sends, the campaigns that fan them out, and who opted out."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models


class Kind(models.TextChoices):
    WELCOME = "welcome", "Welcome"
    PASSWORD_RESET = "password_reset", "Password reset"
    PAYMENT_RECEIPT = "payment_receipt", "Payment receipt"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    DIGEST = "digest", "Daily digest"
    NEWSLETTER = "newsletter", "Newsletter"


TRANSACTIONAL_KINDS = frozenset({Kind.WELCOME, Kind.PASSWORD_RESET, Kind.PAYMENT_RECEIPT,
                                 Kind.PAYMENT_FAILED})


class NotificationPreference(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="notification_preference")
    digest_opt_out = models.BooleanField(default=False)
    newsletter_opt_out = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"preferences of user {self.user_id}"


def single_line(value: str) -> None:
    """A subject is one header line: a line break in it would either be refused by the
    mail backend for every recipient or, on a backend that does not check, start a
    header of the sender's choosing."""
    if "\r" in value or "\n" in value:
        raise ValidationError("A subject cannot contain a line break.")


def default_chunk_size() -> int:
    """Users per bulk task of a new campaign: NOTIFICATIONS_CHUNK_SIZE, read when it is made."""
    return int(settings.NOTIFICATIONS_CHUNK_SIZE)


class Campaign(models.Model):
    """One digest or newsletter sent to everyone who did not opt out."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SENDING = "sending", "Sending"
        DONE = "done", "Done"  # every chunk finished (failed rows stay failed)

    kind = models.CharField(max_length=32, choices=[(Kind.DIGEST, Kind.DIGEST.label),
                                                    (Kind.NEWSLETTER, Kind.NEWSLETTER.label)])
    # e.g. "digest:2026-11-24", so beat firing twice creates one campaign
    key = models.CharField(max_length=255, unique=True)
    subject = models.CharField(max_length=255, validators=[single_line])
    body = models.TextField()
    # At least 1: a campaign of chunks of 0 recipients can never be sent.
    chunk_size = models.PositiveIntegerField(default=default_chunk_size,
                                             validators=[MinValueValidator(1)])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    recipients_total = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class CampaignChunk(models.Model):
    """One bulk task's range of users, written by the fan-out; the campaign is done once
    none of its chunks is pending."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="chunks")
    first_user_id = models.BigIntegerField()
    last_user_id = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "first_user_id"],
                                    name="campaignchunk_campaign_first"),
        ]

    def __str__(self) -> str:
        return f"campaign {self.campaign_id} users {self.first_user_id}..{self.last_user_id}"


class Notification(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    channel = models.CharField(max_length=16, default="email")
    recipient = models.EmailField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.SET_NULL)
    # Indexed by notification_campaign, which leads with it.
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="notifications", db_index=False)
    subject = models.CharField(max_length=255)
    body = models.TextField()
    # The same logical message (e.g. "welcome:user:42") is sent at most once.
    idempotency_key = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    provider_message_id = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # A constraint, not unique=True: that adds a LIKE index each recipient's row
        # would maintain (a newsletter writes one per recipient).
        constraints = [models.UniqueConstraint(fields=["idempotency_key"],
                                               name="notification_idempotency_key")]
        indexes = [
            models.Index(fields=["status", "created_at"], name="notification_status"),
            models.Index(fields=["campaign", "status", "user"], name="notification_campaign"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.recipient} ({self.status})"
