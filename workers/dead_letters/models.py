"""Dead letters: jobs that could not succeed, kept with everything needed to replay them."""

from django.db import models
from django.utils import timezone


class DeadLetter(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        REQUEUED = "requeued", "Requeued"
        DISCARDED = "discarded", "Discarded"
        RESOLVED = "resolved", "Resolved"

    task_id = models.CharField(max_length=255, unique=True)
    task_name = models.CharField(max_length=255)
    queue = models.CharField(max_length=64)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    exception_type = models.CharField(max_length=255)
    message = models.TextField(blank=True)
    # Task + exception type + normalised message (workers/dead_letters/fingerprints.py).
    fingerprint = models.CharField(max_length=16, blank=True)
    traceback = models.TextField(blank=True)
    # The message as received, for poison messages no task could be built from.
    raw_body = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=1)
    worker = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    failed_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    requeue_count = models.PositiveIntegerField(default=0)
    requeued_at = models.DateTimeField(null=True, blank=True)
    requeued_by = models.CharField(max_length=150, blank=True)
    replay_task_id = models.CharField(max_length=255, blank=True)
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-failed_at"]
        indexes = [
            models.Index(fields=["status", "failed_at"], name="deadletter_status_failed"),
            models.Index(fields=["task_name", "failed_at"], name="deadletter_task_failed"),
            models.Index(fields=["queue", "status"], name="deadletter_queue_status"),
            models.Index(fields=["exception_type"], name="deadletter_exception"),
            models.Index(fields=["replay_task_id"], name="deadletter_replay_task"),
            models.Index(fields=["fingerprint", "status"], name="deadletter_fingerprint"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] {self.status}"
