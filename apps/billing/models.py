"""Customers, subscriptions, invoices and payments as Stripe holds them, and Stripe's events.

Rows with a `stripe_id` mirror a Stripe object and change only through its events
(`apps/billing/mirror.py`); `stripe_event_created` is the creation time of the newest
event applied, so an older event delivered late changes nothing. A subscription without a
`stripe_id` is one the app bills itself (invoices, PaymentIntent charges and its own
dunning schedule in `services.py`).
"""

from django.db import models
from django.db.models import Q


class Customer(models.Model):
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)
    stripe_id = models.CharField(max_length=255, unique=True, null=True, blank=True,
                                 help_text="Stripe's customer id (cus_…)")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name or self.email


class Subscription(models.Model):
    class Status(models.TextChoices):
        INCOMPLETE = "incomplete", "Incomplete"
        INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete, expired"
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        CANCELED = "canceled", "Canceled"
        UNPAID = "unpaid", "Unpaid"
        PAUSED = "paused", "Paused"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT,
                                 related_name="subscriptions")
    stripe_id = models.CharField(max_length=255, unique=True, null=True, blank=True,
                                 help_text="Stripe's subscription id (sub_…); empty when "
                                           "the app bills this subscription itself")
    plan = models.CharField(max_length=255)
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.ACTIVE)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField()
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    stripe_event_created = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["status", "current_period_end"],
                                name="subscription_due")]

    def __str__(self) -> str:
        return f"{self.plan} for {self.customer}"


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        UNCOLLECTIBLE = "uncollectible", "Uncollectible"
        VOID = "void", "Void"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, null=True,
                                     blank=True, related_name="invoices")
    stripe_id = models.CharField(max_length=255, unique=True, null=True, blank=True,
                                 help_text="Stripe's invoice id (in_…)")
    number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    amount_due = models.PositiveIntegerField()
    amount_paid = models.PositiveIntegerField(default=0)
    amount_remaining = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    attempt_count = models.PositiveIntegerField(default=0)
    # When the next charge is tried (by Stripe, or by the app's dunning); empty when none is.
    next_payment_attempt = models.DateTimeField(null=True, blank=True)
    hosted_invoice_url = models.URLField(max_length=1000, blank=True)
    last_failure = models.TextField(blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    stripe_event_created = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # The app's own invoicing runs twice without invoicing twice; Stripe's
            # invoices (prorations, one-offs) may share a period start.
            models.UniqueConstraint(fields=["subscription", "period_start"],
                                    condition=Q(stripe_id__isnull=True),
                                    name="invoice_one_per_period"),
        ]
        indexes = [models.Index(fields=["status", "next_payment_attempt"],
                                name="invoice_dunning")]

    def __str__(self) -> str:
        return self.number or self.stripe_id or f"invoice {self.pk}"


class Payment(models.Model):
    """A PaymentIntent: what was asked, received and refunded."""

    class Status(models.TextChoices):
        REQUIRES_PAYMENT_METHOD = "requires_payment_method", "Requires payment method"
        REQUIRES_CONFIRMATION = "requires_confirmation", "Requires confirmation"
        REQUIRES_ACTION = "requires_action", "Requires action"
        PROCESSING = "processing", "Processing"
        REQUIRES_CAPTURE = "requires_capture", "Requires capture"
        CANCELED = "canceled", "Canceled"
        SUCCEEDED = "succeeded", "Succeeded"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="payments")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True,
                                related_name="payments")
    stripe_id = models.CharField(max_length=255, unique=True,
                                 help_text="Stripe's PaymentIntent id (pi_…)")
    status = models.CharField(max_length=32, choices=Status.choices)
    amount = models.PositiveIntegerField()
    amount_received = models.PositiveIntegerField(default=0)
    amount_refunded = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3)
    last_failure = models.TextField(blank=True)
    stripe_event_created = models.DateTimeField(null=True, blank=True, editable=False)
    refund_event_created = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.stripe_id


class PaymentEvent(models.Model):
    """A Stripe event, stored once by its id; `outcome` says what processing made of it."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (type not handled)"
        UNMATCHED = "unmatched", "Unmatched (object not known here)"
        FAILED = "failed", "Failed (in the dead-letter table)"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    # The Stripe id of the event's object (in_…, sub_…, pi_…, ch_…), to find its history.
    object_id = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(help_text="When Stripe created the event")
    payload = models.JSONField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    detail = models.TextField(blank=True, help_text="Why it was unmatched, or left stale")
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["type", "received_at"], name="paymentevent_type"),
            models.Index(fields=["object_id", "created"], name="paymentevent_object"),
            models.Index(fields=["outcome", "received_at"], name="paymentevent_outcome"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
