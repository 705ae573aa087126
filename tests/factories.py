"""Model factories shared by every test module (factory_boy), and signed Stripe events."""

import importlib
import itertools
import json
import time
import uuid
from datetime import UTC, datetime

import factory
import stripe
from django.test import Client
from django.test.client import Client as ClientType

from apps.billing.models import Customer, Invoice, Subscription
from apps.billing.samples import invoice_object, stripe_event
from workers.dead_letters.fingerprints import failure_fingerprint
from workers.dead_letters.models import DeadLetter

# Event times of the billing tests: now, and a monthly period around it (Unix seconds).
NOW = int(time.time())
PERIOD = (NOW - 86400, NOW + 29 * 86400)
WEBHOOK_SECRET = "whsec_test_secret"  # BILLING_WEBHOOK_SECRET in tests/settings.py
WEBHOOK_URL = "/webhooks/billing/"
_sequence = itertools.count()


class DeadLetterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeadLetter

    task_id = factory.Sequence(lambda n: f"dead-letter-{n}")
    task_name = "tests.tasks.permanent"
    args = factory.Sequence(lambda n: [f"key-{n}"])  # the call tests.tasks.permanent takes
    queue = "critical"
    exception_type = "workers.core.exceptions.PermanentError"
    message = "invalid input"
    fingerprint = factory.LazyAttribute(lambda row: failure_fingerprint(
        task_name=row.task_name, exception_type=row.exception_type, message=row.message))


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    email = factory.Sequence(lambda n: f"customer-{n}@example.com")
    stripe_id = factory.LazyFunction(lambda: stripe_id("cus"))


class SubscriptionFactory(factory.django.DjangoModelFactory):
    """A subscription the app bills itself (no Stripe subscription)."""

    class Meta:
        model = Subscription

    customer = factory.SubFactory(CustomerFactory)
    plan = "pro"
    amount_cents = 2900
    current_period_end = datetime(2026, 12, 1, tzinfo=UTC)


class InvoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invoice

    subscription = factory.SubFactory(SubscriptionFactory)
    customer = factory.LazyAttribute(lambda invoice: invoice.subscription.customer)
    number = factory.LazyFunction(lambda: f"INV-{time.time_ns()}-{next(_sequence)}")
    period_start = datetime(2026, 11, 1, tzinfo=UTC)
    period_end = datetime(2026, 12, 1, tzinfo=UTC)
    amount_due = 2900
    amount_remaining = 2900
    currency = "usd"


def stripe_id(prefix: str) -> str:
    """A fresh Stripe-style id (`cus_…`, `in_…`); the Stripe stand-in answers a customer by
    its id's prefix (`cus_declined_…` is declined)."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def invoice_for(email: str, customer_id: str = "cus_ok") -> Invoice:
    """An open invoice the app bills, of a new customer with this address (the receipt goes
    there), whose Stripe customer id starts with `customer_id`."""
    return InvoiceFactory(subscription__customer__email=email,
                          subscription__customer__stripe_id=stripe_id(customer_id))


def invoice_event(event_type: str, customer: Customer, *, invoice_id: str | None = None,
                  status: str = "paid", amount: int = 2900, attempt_count: int = 1,
                  next_payment_attempt: int | None = None, subscription: str | None = None,
                  created: int | None = None) -> dict:
    """A Stripe invoice event for this customer, built on Stripe's example invoice."""
    obj = invoice_object(stripe_id=invoice_id or stripe_id("in"), customer=customer.stripe_id,
                         subscription=subscription, status=status, amount=amount,
                         attempt_count=attempt_count,
                         next_payment_attempt=next_payment_attempt)
    return stripe_event(event_type, obj, created=created)


def post_event(client: ClientType | Client, event: dict | bytes, *,
               secret: str = WEBHOOK_SECRET, timestamp: int | None = None,
               header: str | None = None, headers: dict[str, str] | None = None):
    """POST a webhook signed the way Stripe signs it (or with the header given)."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    if header is None:
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret,
                                                                   timestamp=timestamp)
    signature = {"Stripe-Signature": header} if header else {}
    return client.post(WEBHOOK_URL, body, content_type="application/json",
                       headers={**signature, **(headers or {})})


def dead_letter_roles() -> None:
    """The roles the migrations create, again: a transactional test before this one may have
    flushed them with every other table."""
    from django.apps import apps

    migration = importlib.import_module("workers.migrations.0006_dead_letter_triage")
    migration.create_roles(apps, None)
