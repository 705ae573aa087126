"""Every alert raised, with its delivery state: what the team was told, and when."""

from django.db import models
from django.utils import timezone


class Alert(models.Model):
    class Kind(models.TextChoices):
        FAILURE = "failure", "New failure"
        DIGEST = "digest", "Repeats"
        THRESHOLD = "threshold", "Threshold crossed"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # not yet out, or a channel failed: retried
        DELIVERED = "delivered", "Delivered"
        # Only logged: no ALERTS_SLACK_WEBHOOK_URL or ALERTS_EMAIL_TO was set. Not retried.
        NO_CHANNEL = "no_channel", "Not sent: no channel"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    # What repeats are counted by: a failure fingerprint or a threshold's name.
    key = models.CharField(max_length=255)
    title = models.CharField(max_length=255)
    text = models.TextField(blank=True)
    link = models.CharField(max_length=1000, blank=True)
    repeats = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivered_to = models.JSONField(default=list, blank=True)  # channels already done
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=models.Q(
                status="pending"), name="alert_pending"),
            models.Index(fields=["key", "created_at"], name="alert_key_created"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"
