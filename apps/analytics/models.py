"""Raw product events and their hourly counts."""

from django.conf import settings
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


class ExportJob(models.Model):
    """A CSV of raw events for a date range, written by a bulk worker."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="analytics_exports")
    date_from = models.DateField()
    date_to = models.DateField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)  # percent
    row_count = models.PositiveIntegerField(default=0)
    file = models.FileField(upload_to="exports/", blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"events {self.date_from}..{self.date_to} ({self.status})"
