"""The rows behind transactional enqueue (the outbox) and effect-once execution."""

from django.db import models
from django.utils import timezone


class OutboxMessage(models.Model):
    """A task written in the same transaction as the change that needs it (the outbox).

    It exists if and only if that transaction committed; `workers.core.outbox` publishes it
    right after commit, and the beat sweeper publishes whatever a crash or a Redis
    outage left behind. `task_id` is fixed here, so publishing a row twice sends the
    same task id twice, which effect-once tasks run only once.
    """

    task_id = models.CharField(max_length=255)
    task_name = models.CharField(max_length=255)
    queue = models.CharField(max_length=64)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    eta = models.DateTimeField(null=True, blank=True)  # run no earlier than this
    priority = models.PositiveSmallIntegerField(null=True, blank=True)  # Celery's, 0-9
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        # A constraint rather than unique=True: the field option adds a second index
        # (varchar_pattern_ops, for LIKE) that every insert and mark would maintain.
        constraints = [models.UniqueConstraint(fields=["task_id"], name="outbox_task_id")]
        indexes = [
            models.Index(fields=["id"], condition=models.Q(published_at__isnull=True),
                         name="outbox_unpublished"),
            # For the purge of published rows; partial, so that the INSERT in the
            # caller's transaction does not maintain it (the mark, off that path, does).
            models.Index(fields=["published_at"], condition=models.Q(published_at__isnull=False),
                         name="outbox_published"),
        ]

    def __str__(self) -> str:
        state = "published" if self.published_at else "pending"
        return f"{self.task_name}[{self.task_id}] {state}"


class TaskEffect(models.Model):
    """Proof that a task's effects committed: written in the same transaction as they are.

    A redelivered or requeued task finds its key here and does nothing.
    """

    key = models.CharField(max_length=255)
    task_name = models.CharField(max_length=255)
    task_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        # Not unique=True, which adds a LIKE index each task's claim would maintain.
        constraints = [models.UniqueConstraint(fields=["key"], name="taskeffect_key")]
        indexes = [models.Index(fields=["expires_at"], name="taskeffect_expires")]

    def __str__(self) -> str:
        return f"{self.key} by {self.task_name}[{self.task_id}]"
