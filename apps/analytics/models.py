"""Raw product events and their hourly counts."""

from django.db import models


class Event(models.Model):
    name = models.CharField(max_length=100)
    occurred_at = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["occurred_at", "name"], name="event_occurred")]

    def __str__(self) -> str:
        return f"{self.name} at {self.occurred_at:%Y-%m-%d %H:%M}"


class HourlyRollup(models.Model):
    hour = models.DateTimeField()
    name = models.CharField(max_length=100)
    count = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "name"], name="hourlyrollup_hour_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.hour:%Y-%m-%d %H}:00 = {self.count}"
