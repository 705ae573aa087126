from django.contrib import admin

from apps.billing.models import PaymentEvent


@admin.register(PaymentEvent)
class PaymentEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "type", "received_at", "processed_at")
    list_filter = ("type", "received_at")
    search_fields = ("=event_id",)
    readonly_fields = ("event_id", "type", "payload", "received_at", "processed_at")
