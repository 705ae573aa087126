"""The outbox in the Django admin, read-only: services write rows, the outbox publishes them."""

from django.contrib import admin

from workers.core.models import OutboxMessage
from workers.core.read_only_admin import ReadOnlyAdmin
from workers.core.redaction import json_html, payload_html, redact, text_html


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    """Read-only: rows are written by services and published by the outbox itself."""

    list_display = ("id", "task_name", "queue", "task_id", "created_at", "published_at",
                    "publish_attempts")
    list_filter = (("published_at", admin.EmptyFieldListFilter), "queue", "task_name")
    search_fields = ("=task_id", "task_name")
    redacted_fields = ("args", "kwargs", "headers", "last_error")
    fields = ("task_name", "task_id", "queue", "payload", "shown_headers", "created_at",
              "published_at", "publish_attempts", "shown_error")
    readonly_fields = fields

    @admin.display(description="payload (secrets redacted)")
    def payload(self, row: OutboxMessage) -> str:
        return payload_html(task_name=row.task_name, args=row.args, kwargs=row.kwargs)

    @admin.display(description="headers (secrets redacted)")
    def shown_headers(self, row: OutboxMessage) -> str:
        return json_html(redact(row.headers))

    @admin.display(description="last error (secrets redacted)")
    def shown_error(self, row: OutboxMessage) -> str:
        return text_html(row.last_error) if row.last_error else "-"
