"""`manage.py billing_demo`: a customer, subscription and open invoice to try the webhook on.

Development only; running it again reuses the same rows.
"""

from datetime import date
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.billing.models import Customer, Invoice, Subscription

DEMO_INVOICE = "INV-DEMO-1"


class Command(BaseCommand):
    help = "Create (once) a demo customer with an open invoice numbered INV-DEMO-1."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.DJANGO_ENV != "dev":
            raise CommandError("billing_demo only runs with DJANGO_ENV=dev")
        customer, _ = Customer.objects.get_or_create(
            email="customer@example.com", defaults={"name": "Demo Customer",
                                                    "provider_customer_id": "cus_demo"})
        subscription, _ = Subscription.objects.get_or_create(
            customer=customer, plan="pro",
            defaults={"amount_cents": 2900, "next_billing_date": date(2026, 12, 1)})
        invoice, _ = Invoice.objects.get_or_create(
            number=DEMO_INVOICE,
            defaults={"subscription": subscription, "period_start": date(2026, 11, 1),
                      "period_end": date(2026, 12, 1), "amount_cents": 2900,
                      "currency": "usd"})
        self.stdout.write(f"invoice {invoice.number} for {customer.email}: {invoice.status}")
