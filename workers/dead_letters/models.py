"""Dead letters: jobs that could not succeed, kept with everything needed to replay them."""

from django.db import models
from django.utils import timezone


class DeadLetter(models.Model):
    class Status(models.TextChoices):
        """new -> acknowledged / snoozed (until a time, then new again) -> requeued ->
        resolved (its replay succeeded) or superseded (its replay failed again and is a
        new row, `replay_of` this one); or discarded."""

        NEW = "new", "New"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        SNOOZED = "snoozed", "Snoozed"
        REQUEUED = "requeued", "Requeued"
        DISCARDED = "discarded", "Discarded"
        RESOLVED = "resolved", "Resolved"
        SUPERSEDED = "superseded", "Failed again (see its replay)"

    task_id = models.CharField(max_length=255)
    task_name = models.CharField(max_length=255)
    queue = models.CharField(max_length=64)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    # The call as it failed, kept once an operator edits args/kwargs (workers/dead_letters/
    # edits.py); null while the row was never edited.
    original_args = models.JSONField(null=True, blank=True)
    original_kwargs = models.JSONField(null=True, blank=True)
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
    snoozed_until = models.DateTimeField(null=True, blank=True)
    # The error of every attempt before the last one, oldest first (exception type,
    # message, when), kept by the runtime while the job was being retried.
    attempt_errors = models.JSONField(default=list, blank=True)
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
    # The redrive that requeued this row last, if any (its progress counts the row).
    redrive = models.ForeignKey("Redrive", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="dead_letters")

    class Meta:
        ordering = ["-failed_at"]
        # Not unique=True, whose extra LIKE index every failure and replay would maintain.
        constraints = [models.UniqueConstraint(fields=["task_id"], name="deadletter_task_id")]
        indexes = [
            models.Index(fields=["status", "failed_at"], name="deadletter_status_failed"),
            models.Index(fields=["task_name", "failed_at"], name="deadletter_task_failed"),
            models.Index(fields=["queue", "status"], name="deadletter_queue_status"),
            models.Index(fields=["exception_type"], name="deadletter_exception"),
            models.Index(fields=["replay_task_id"], name="deadletter_replay_task"),
            models.Index(fields=["fingerprint", "status"], name="deadletter_fingerprint"),
        ]
        permissions = [
            ("view_payload", "Can see dead-letter payloads unredacted"),
            ("requeue_deadletter", "Can requeue and redrive dead letters"),
            ("edit_deadletter", "Can edit a dead letter's arguments and requeue it"),
            ("discard_deadletter", "Can discard dead letters"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] {self.status}"


class Redrive(models.Model):
    """A background replay of a frozen set of dead letters: a canary first, then at a set
    rate, pausing by itself when too many replays fail again (workers/dead_letters/redrive.py).
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft (not started)"
        CANARY = "canary", "Canary running"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        DONE = "done", "Done"

    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    description = models.CharField(max_length=500, help_text="what was selected, and how")
    dead_letter_ids = models.JSONField(default=list)  # frozen when the redrive was drafted
    queue = models.CharField(max_length=64, blank=True,
                             help_text="blank: each dead letter's original queue")
    rate = models.FloatField(default=50.0, help_text="replays sent per second")
    canary = models.PositiveIntegerField(
        default=10, help_text="sent first; the rest waits until they all succeeded")
    max_failure_rate = models.FloatField(
        default=0.2, help_text="pause when this share of finished replays failed again")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    status_reason = models.CharField(max_length=500, blank=True)
    step_token = models.CharField(max_length=64, blank=True)  # the live step chain's
    position = models.PositiveIntegerField(default=0)  # ids[:position] were handled
    sent = models.PositiveIntegerField(default=0)
    # The observation window: since the start or the last resume. Only the replays sent
    # in it count towards its canary and its automatic pause.
    window_started_at = models.DateTimeField(null=True, blank=True)
    window_canary = models.PositiveIntegerField(default=0)
    window_sent = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)  # no longer requeueable when reached
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "updated_at"], name="redrive_status")]

    def __str__(self) -> str:
        return f"redrive {self.pk} ({self.status}): {self.description}"


class DeadLetterEvent(models.Model):
    """The audit trail and the notes: who did what to which dead letters, and why."""

    class Action(models.TextChoices):
        VIEWED_PAYLOAD = "viewed_payload", "Viewed the unredacted payload"
        SEARCHED_PAYLOAD = "searched_payload", "Searched the payloads"
        REQUEUED = "requeued", "Requeued"
        EDITED = "edited", "Edited and requeued"
        DISCARDED = "discarded", "Discarded"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        SNOOZED = "snoozed", "Snoozed"
        NOTE = "note", "Note"
        REDRIVE = "redrive", "Redrive started"
        REDRIVE_PAUSED = "redrive_paused", "Redrive paused"
        REDRIVE_RESUMED = "redrive_resumed", "Redrive resumed"
        REDRIVE_CANCELLED = "redrive_cancelled", "Redrive cancelled"
        REDRIVE_DONE = "redrive_done", "Redrive done"
        EXPORTED = "exported", "Exported"
        PURGED = "purged", "Purged"

    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=32, choices=Action.choices)
    # One row, a group (fingerprint), or a selection described in `detail`.
    dead_letter = models.ForeignKey(DeadLetter, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="events")
    fingerprint = models.CharField(max_length=16, blank=True)
    redrive = models.ForeignKey(Redrive, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="events")
    count = models.PositiveIntegerField(default=1)
    text = models.TextField(blank=True)  # a note, or why
    detail = models.JSONField(default=dict, blank=True)  # the filter, ids, redrive, diff

    class Meta:
        ordering = ["-at"]
        indexes = [
            models.Index(fields=["dead_letter", "at"], name="dlevent_row"),
            models.Index(fields=["fingerprint", "at"], name="dlevent_group"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} ({self.count})"
