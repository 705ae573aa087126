"""Payment provider events, stored once per provider event id."""

from django.db import models


class PaymentEvent(models.Model):
    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["type", "received_at"], name="paymentevent_type")]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
