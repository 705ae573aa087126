"""The outbox in the Django admin, read-only: services write rows, the outbox publishes them."""

from django.contrib import admin
from django.http import HttpRequest

from workers.api.models import OutboxMessage
from workers.api.redaction import payload_html


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

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="payload (sensitive keys redacted)")
    def payload(self, row: OutboxMessage) -> str:
        return payload_html(row.args, row.kwargs)
