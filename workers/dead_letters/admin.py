"""Dead-letter triage in the Django admin: filter, read, requeue or discard."""

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from workers.dead_letters.models import DeadLetter
from workers.dead_letters.redaction import payload_html, redact_text
from workers.dead_letters.services import (
    DISCARDABLE,
    REQUEUEABLE,
    dead_letter_replayable,
    dead_letters_discard,
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

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
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
        return payload_html(row.args, row.kwargs)

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
        outcome = dead_letters_discard(dead_letter_ids=list(rows.values_list("pk", flat=True)),
                                       actor=request.user.get_username())
        self._report(request, refused=outcome.refused.values(),
                     succeeded=len(outcome.discarded), done="discarded")

    def _report(self, request: HttpRequest, *, refused: Iterable[str], succeeded: int,
                done: str) -> None:
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)
        if succeeded:
            self.message_user(request, f"{succeeded} dead letter(s) {done}.", messages.SUCCESS)
