from django.contrib import admin
from django.http import HttpRequest

from apps.billing.models import Customer, Invoice, PaymentEvent, Subscription


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "email", "name", "provider_customer_id", "created_at")
    search_fields = ("email", "name", "=provider_customer_id")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("id", "customer", "plan", "amount_cents", "currency", "status",
                    "next_billing_date")
    list_filter = ("status", "plan")
    search_fields = ("customer__email",)
    raw_id_fields = ("customer",)


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("number", "subscription", "amount_cents", "currency", "status",
                    "charge_attempts", "next_charge_at", "paid_at")
    list_filter = ("status", "period_start")
    search_fields = ("=number", "subscription__customer__email")
    readonly_fields = ("charge_attempts", "next_charge_at", "payment_reference", "last_failure",
                       "paid_at", "created_at")
    raw_id_fields = ("subscription",)


@admin.register(PaymentEvent)
class PaymentEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "type", "outcome", "received_at", "processed_at")
    list_filter = ("outcome", "type", "received_at")
    search_fields = ("=event_id",)
    readonly_fields = ("event_id", "type", "payload", "outcome", "received_at", "processed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
