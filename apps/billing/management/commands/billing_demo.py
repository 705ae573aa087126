"""`manage.py billing_demo`: a Stripe customer with a subscription and two open invoices to
try the webhook on; `--event TYPE` prints a Stripe event about them to post.

Development only; running it again reuses the same rows, and the same `--event` prints
the same event id (posting it twice shows the duplicate).
"""

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.billing.models import Customer, Invoice, Subscription
from apps.billing.samples import invoice_object, stripe_event

DEMO_CUSTOMER, DEMO_SUBSCRIPTION = "cus_demo", "sub_demo"
DEMO_INVOICES = {"invoice.paid": ("in_demo_paid", "DEMO-0001"),
                 "invoice.payment_failed": ("in_demo_failed", "DEMO-0002")}
AMOUNT = 2900


class Command(BaseCommand):
    help = ("Create (once) Stripe customer cus_demo with subscription sub_demo and open "
            "invoices DEMO-0001 and DEMO-0002; with --event, print an event to post.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--event", choices=sorted(DEMO_INVOICES),
                            help="print this Stripe event (JSON) for the demo customer")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.DJANGO_ENV != "dev":
            raise CommandError("billing_demo only runs with DJANGO_ENV=dev")
        start = datetime(2026, 11, 1, tzinfo=UTC)
        end = datetime(2026, 12, 1, tzinfo=UTC)
        customer, _ = Customer.objects.get_or_create(
            stripe_id=DEMO_CUSTOMER,
            defaults={"email": "customer@example.com", "name": "Demo Customer"})
        subscription, _ = Subscription.objects.get_or_create(
            stripe_id=DEMO_SUBSCRIPTION,
            defaults={"customer": customer, "plan": "pro", "amount_cents": AMOUNT,
                      "current_period_start": start, "current_period_end": end})
        for stripe_id, number in DEMO_INVOICES.values():
            Invoice.objects.get_or_create(stripe_id=stripe_id, defaults={
                "customer": customer, "subscription": subscription, "number": number,
                "amount_due": AMOUNT, "amount_remaining": AMOUNT, "currency": "usd",
                "period_start": start, "period_end": end})
        event_type = options["event"]
        if event_type is None:
            for invoice in Invoice.objects.filter(customer=customer).order_by("number"):
                self.stdout.write(f"invoice {invoice} ({invoice.stripe_id}) for "
                                  f"{customer.email}: {invoice.status}")
            return
        stripe_id, number = DEMO_INVOICES[event_type]
        failed = event_type == "invoice.payment_failed"
        retry = int((datetime.now(UTC) + timedelta(days=3)).timestamp())
        obj = invoice_object(
            stripe_id=stripe_id, customer=DEMO_CUSTOMER, subscription=DEMO_SUBSCRIPTION,
            status="open" if failed else "paid", amount=AMOUNT, number=number,
            attempt_count=1, next_payment_attempt=retry if failed else None,
            period=(int(start.timestamp()), int(end.timestamp())))
        event = stripe_event(event_type, obj, event_id=f"evt_demo_{stripe_id}",
                             created=int(time.time()))
        self.stdout.write(json.dumps(event, separators=(",", ":")))
