from django.contrib import admin

from apps.notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "recipient", "status", "attempts", "created_at", "sent_at")
    list_filter = ("status", "kind", "created_at")
    search_fields = ("recipient", "idempotency_key")
    readonly_fields = ("idempotency_key", "status", "attempts", "created_at", "sent_at")
