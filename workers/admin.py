"""Dead-letter triage in the Django admin: filter, read, requeue or discard."""

import json
from collections.abc import Iterable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from workers.models import DeadLetter, OutboxMessage
from workers.redaction import redact, redact_text
from workers.services import (
    DISCARDABLE,
    REQUEUEABLE,
    DeadLetterStateError,
    dead_letter_discard,
    dead_letter_replayable,
    dead_letters_requeue,
)


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("id", "task_name", "queue", "exception_name", "short_message", "status",
                    "attempts", "requeue_count", "failed_at")
    list_filter = ("status", "queue", "task_name", "exception_type", "failed_at")
    search_fields = ("=task_id", "task_name", "message")
    date_hierarchy = "failed_at"
    actions = ("requeue", "discard")
    fields = ("task_name", "task_id", "queue", "status", "exception_type", "message",
              "attempts", "worker", "failed_at", "payload", "raw_message", "formatted_traceback",
              "requeue_count", "requeued_at", "requeued_by", "replay_task_id", "replay_of",
              "closed_at", "closed_by")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Read-only page (no Save buttons) with the triage actions the row allows."""
        row = self.get_object(request, object_id)
        actions = []
        if row is not None and self.has_change_permission(request, row):
            if row.status in REQUEUEABLE and dead_letter_replayable(row):
                actions.append(("requeue", "Requeue"))
            if row.status in DISCARDABLE:
                actions.append(("discard", "Discard"))
        context = {"triage_actions": actions, "show_save": False,
                   "show_save_and_continue": False, "show_save_and_add_another": False,
                   **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    @admin.display(description="exception", ordering="exception_type")
    def exception_name(self, row: DeadLetter) -> str:
        return row.exception_type.rpartition(".")[2]

    @admin.display(description="message")
    def short_message(self, row: DeadLetter) -> str:
        return row.message[:80]

    @admin.display(description="payload (sensitive keys redacted)")
    def payload(self, row: DeadLetter) -> str:
        return _payload_html(row.args, row.kwargs)

    @admin.display(description="raw message body (poison messages; sensitive keys redacted)")
    def raw_message(self, row: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", redact_text(row.raw_body)) if row.raw_body else "-"

    @admin.display(description="traceback")
    def formatted_traceback(self, row: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", row.traceback)

    @admin.action(description="Requeue on the original queue", permissions=["change"])
    def requeue(self, request: HttpRequest, rows: QuerySet[DeadLetter]) -> None:
        outcome = dead_letters_requeue(dead_letter_ids=list(rows.values_list("pk", flat=True)),
                                       actor=request.user.get_username())
        self._report(request, refused=outcome.refused.values(),
                     succeeded=len(outcome.requeued), done="requeued")

    @admin.action(description="Discard (keep for the record, never replay)",
                  permissions=["change"])
    def discard(self, request: HttpRequest, rows: QuerySet[DeadLetter]) -> None:
        ids = list(rows.values_list("pk", flat=True))
        refused = []
        for pk in ids:
            try:
                dead_letter_discard(dead_letter_id=pk, actor=request.user.get_username())
            except DeadLetterStateError as exc:
                refused.append(str(exc))
        self._report(request, refused=refused, succeeded=len(ids) - len(refused),
                     done="discarded")

    def _report(self, request, *, refused: Iterable[str], succeeded: int, done: str) -> None:
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)
        if succeeded:
            self.message_user(request, f"{succeeded} dead letter(s) {done}.", messages.SUCCESS)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """Read-only: rows are written by services and published by the outbox itself."""

    list_display = ("id", "task_name", "queue", "task_id", "created_at", "published_at",
                    "publish_attempts")
    list_filter = (("published_at", admin.EmptyFieldListFilter), "queue", "task_name")
    search_fields = ("=task_id", "task_name")
    fields = ("task_name", "task_id", "queue", "payload", "headers", "created_at",
              "published_at", "publish_attempts", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="payload (sensitive keys redacted)")
    def payload(self, row: OutboxMessage) -> str:
        return _payload_html(row.args, row.kwargs)


def _payload_html(args: list, kwargs: dict) -> str:
    shown = json.dumps({"args": redact(args), "kwargs": redact(kwargs)}, indent=2)
    return format_html("<pre>{}</pre>", shown)
