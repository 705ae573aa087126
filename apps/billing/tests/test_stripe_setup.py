"""What a team sets up in Stripe matches what the app handles, and the README's try-it
sequence does what it says with a real worker."""

import io
import re
from pathlib import Path

import stripe
from django.core.management import call_command

from apps.billing.models import Invoice, PaymentEvent
from apps.billing.stripe_events import EVENT_HANDLERS
from apps.notifications.models import Kind, Notification
from tests.factories import post_event
from tests.fixtures import last_outbox_id, wait_for, wait_for_outbox_jobs

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_lists_exactly_the_handled_event_types():
    listed = README.read_text().split("<!-- stripe-events -->")[1].split("<!--")[0]
    assert sorted(re.findall(r"`([a-z_.]+)`", listed)) == sorted(EVENT_HANDLERS)


def test_the_pinned_api_version_is_the_stripe_librarys_own(settings):
    """Upgrading the library moves its version: the pin, the endpoint and the example
    objects have to move with it, on purpose."""
    assert stripe.api_version == settings.STRIPE_API_VERSION
    assert f"API version `{stripe.api_version}`" in README.read_text()


def test_the_demo_events_pay_one_invoice_and_tell_of_the_other_failure(live_workers, client,
                                                                        settings, test_redis):
    settings.DJANGO_ENV = "dev"
    jobs_before = last_outbox_id()
    call_command("billing_demo", stdout=io.StringIO())

    for event_type in ("invoice.paid", "invoice.payment_failed"):
        out = io.StringIO()
        call_command("billing_demo", event=event_type, stdout=out)
        body = out.getvalue().strip().encode()
        assert [post_event(client, body).json()["duplicate"] for _ in range(2)] == [False, True]

    wait_for(lambda: not PaymentEvent.objects.filter(outcome="pending").exists(),
             what="both events processed")
    wait_for_outbox_jobs(test_redis, after_id=jobs_before)  # the receipt and the notice
    assert set(PaymentEvent.objects.values_list("outcome", flat=True)) == {"processed"}
    paid, failed = Invoice.objects.order_by("number")
    assert (paid.number, paid.status, failed.number, failed.status) == (
        "DEMO-0001", "paid", "DEMO-0002", "open")
    assert failed.next_payment_attempt is not None
    notice = Notification.objects.get(kind=Kind.PAYMENT_FAILED)
    assert notice.status == "sent"
    assert notice.recipient == "customer@example.com"
    assert "DEMO-0002" in notice.subject
