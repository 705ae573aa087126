"""Alerts in the Django admin, read-only: what the team was told, and whether it went out."""

from django.contrib import admin

from workers.core.read_only_admin import ReadOnlyAdmin
from workers.ops.alerts.models import Alert


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "title", "repeats", "status", "delivered_at",
                    "attempts")
    list_filter = ("kind", "status")
    search_fields = ("title", "key")
    readonly_fields = ("kind", "key", "title", "text", "link", "repeats", "created_at",
                       "status", "delivered_at", "delivered_to", "attempts", "next_attempt_at",
                       "last_error")
    fields = readonly_fields
