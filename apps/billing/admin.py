"""Billing in the admin: Stripe's state as mirrored here, and every event with its outcome.

Fields Stripe owns are read-only on rows that mirror a Stripe object: an edit here would
be overwritten by the next event, and Stripe (its dashboard or API) is where to change them.
"""

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from apps.billing.models import Customer, Invoice, Payment, PaymentEvent, Subscription
from apps.billing.selectors import customers_with_access_flag
from apps.billing.stripe_events import payment_events_reprocess
from workers.core.redaction import json_html, redact


class StripeMirrorAdmin(admin.ModelAdmin):
    stripe_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None
                            ) -> tuple[str, ...]:
        own = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and getattr(obj, "stripe_id", None):
            return own + self.stripe_fields
        return own


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "email", "name", "stripe_id", "has_access", "created_at")
    search_fields = ("email", "name", "=stripe_id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        return customers_with_access_flag(super().get_queryset(request))

    @admin.display(boolean=True, description="Access", ordering="has_access")
    def has_access(self, customer: Any) -> bool:
        return bool(customer.has_access)


@admin.register(Subscription)
class SubscriptionAdmin(StripeMirrorAdmin):
    list_display = ("id", "stripe_id", "customer", "plan", "amount_cents", "currency",
                    "status", "current_period_end", "cancel_at_period_end")
    list_filter = ("status", "plan", "cancel_at_period_end")
    search_fields = ("=stripe_id", "customer__email", "=customer__stripe_id")
    raw_id_fields = ("customer",)
    readonly_fields = ("stripe_event_created", "created_at")
    stripe_fields = ("stripe_id", "customer", "plan", "amount_cents", "currency", "status",
                     "current_period_start", "current_period_end", "cancel_at_period_end",
                     "canceled_at")


@admin.register(Invoice)
class InvoiceAdmin(StripeMirrorAdmin):
    list_display = ("__str__", "stripe_id", "customer", "amount_due", "amount_paid",
                    "currency", "status", "attempt_count", "next_payment_attempt", "paid_at")
    list_filter = ("status", "period_start")
    search_fields = ("=number", "=stripe_id", "customer__email", "=customer__stripe_id")
    readonly_fields = ("attempt_count", "next_payment_attempt", "last_failure", "paid_at",
                       "stripe_event_created", "created_at")
    raw_id_fields = ("customer", "subscription")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    stripe_fields = ("stripe_id", "customer", "subscription", "number", "status",
                     "amount_due", "amount_paid", "amount_remaining", "currency",
                     "period_start", "period_end", "hosted_invoice_url")


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("stripe_id", "customer", "invoice", "status", "amount", "amount_received",
                    "amount_refunded", "currency", "created_at")
    list_filter = ("status",)
    search_fields = ("=stripe_id", "customer__email", "=customer__stripe_id")
    raw_id_fields = ("customer", "invoice")
    readonly_fields = ("stripe_id", "customer", "invoice", "status", "amount",
                       "amount_received", "amount_refunded", "currency", "last_failure",
                       "stripe_event_created", "refund_event_created", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(PaymentEvent)
class PaymentEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "type", "object_id", "outcome", "created", "received_at",
                    "processed_at")
    list_filter = ("outcome", "type", "received_at")
    search_fields = ("=event_id", "=object_id")
    fields = readonly_fields = ("event_id", "type", "object_id", "created", "outcome",
                                "detail", "received_at", "processed_at", "payload_shown")
    actions = ("process_again",)

    @admin.display(description="Payload (secrets redacted)")
    def payload_shown(self, event: PaymentEvent) -> str:
        """A PaymentIntent's client_secret, for one, lets whoever holds it confirm it."""
        return json_html(redact(event.payload))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Process the selected unmatched events again",
                  permissions=["change"])
    def process_again(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """After the missing customer or object has been created here."""
        queued = payment_events_reprocess(payment_event_ids=list(
            queryset.values_list("pk", flat=True)))
        skipped = queryset.count() - queued
        self.message_user(request, f"{queued} event(s) queued to be processed again"
                          + (f"; {skipped} skipped (only unmatched events can be)"
                             if skipped else ""),
                          messages.SUCCESS if queued else messages.WARNING)
