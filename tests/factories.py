"""Model factories shared by every test module (factory_boy), and Stripe-shaped events."""

import importlib
import itertools
import json
import time
from datetime import date

import factory
import stripe
from django.test import Client
from django.test.client import Client as ClientType

from apps.billing.models import Customer, Invoice, Subscription
from workers.dead_letters.fingerprints import failure_fingerprint
from workers.dead_letters.models import DeadLetter

WEBHOOK_SECRET = "whsec_test_secret"  # BILLING_WEBHOOK_SECRET in tests/settings.py
WEBHOOK_URL = "/webhooks/billing/"
_sequence = itertools.count()


class DeadLetterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeadLetter

    task_id = factory.Sequence(lambda n: f"dead-letter-{n}")
    task_name = "tests.tasks.permanent"
    queue = "critical"
    exception_type = "workers.api.exceptions.PermanentError"
    message = "invalid input"
    fingerprint = factory.LazyAttribute(lambda row: failure_fingerprint(
        task_name=row.task_name, exception_type=row.exception_type, message=row.message))


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    email = factory.Sequence(lambda n: f"customer-{n}@example.com")
    provider_customer_id = "cus_ok"


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    customer = factory.SubFactory(CustomerFactory)
    plan = "pro"
    amount_cents = 2900
    next_billing_date = date(2026, 12, 1)


class InvoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invoice

    subscription = factory.SubFactory(SubscriptionFactory)
    number = factory.LazyFunction(lambda: f"INV-{time.time_ns()}-{next(_sequence)}")
    period_start = date(2026, 11, 1)
    period_end = date(2026, 12, 1)
    amount_cents = 2900
    currency = "usd"


def invoice_for(email: str, customer_id: str = "cus_ok") -> Invoice:
    """An open invoice of a new customer with this address (the receipt goes there)."""
    return InvoiceFactory(subscription__customer__email=email,
                          subscription__customer__provider_customer_id=customer_id)


def payment_event(kind: str, invoice: Invoice | None = None,
                  event_id: str | None = None) -> dict:
    obj = {"id": f"pi_{time.time_ns()}", "invoice": invoice.number if invoice else None}
    return {"id": event_id or f"evt_{time.time_ns()}", "type": kind, "data": {"object": obj}}


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
