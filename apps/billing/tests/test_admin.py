"""Billing in the admin: Stripe's fields read-only on mirrored rows, access, reprocessing."""

import pytest
from django.urls import reverse

from apps.billing.models import Customer, Invoice, PaymentEvent, Subscription
from apps.billing.samples import stripe_event
from apps.billing.stripe_events import payment_event_process, payment_event_store
from tests.factories import CustomerFactory, InvoiceFactory, invoice_event, stripe_id
from tests.stripe_samples import payment_intent_object


@pytest.mark.django_db
def test_a_mirrored_invoice_shows_stripes_state_read_only(admin_client):
    customer = CustomerFactory()
    mirrored = InvoiceFactory(subscription=None, customer=customer, stripe_id=stripe_id("in"),
                              number="ABC-0042", attempt_count=2)
    own = InvoiceFactory()

    page = admin_client.get(reverse("admin:billing_invoice_change", args=[mirrored.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert mirrored.stripe_id in html
    assert "ABC-0042" in html
    assert 'name="status"' not in html  # Stripe's to change
    own_page = admin_client.get(reverse("admin:billing_invoice_change", args=[own.pk]))
    assert 'name="status"' in own_page.content.decode()


@pytest.mark.django_db
def test_the_customer_list_shows_who_has_access(admin_client):
    paying = CustomerFactory(email="paying@example.com")
    gone = CustomerFactory(email="gone@example.com")
    for customer, status in ((paying, "past_due"), (gone, "canceled")):
        Subscription.objects.create(customer=customer, plan="pro", amount_cents=1,
                                    status=status, current_period_end="2026-12-01T00:00Z")

    html = admin_client.get(reverse("admin:billing_customer_changelist")).content.decode()
    rows = {email: html[html.index(email):].split("</tr>")[0]
            for email in ("paying@example.com", "gone@example.com")}
    assert 'alt="True"' in rows["paying@example.com"]
    assert 'alt="False"' in rows["gone@example.com"]


@pytest.mark.django_db
def test_unmatched_events_are_processed_again_from_the_admin(admin_client,
                                                             django_capture_on_commit_callbacks):
    customer = Customer(stripe_id=stripe_id("cus"), email="imported@example.com")
    stored, _ = payment_event_store(event=invoice_event("invoice.paid", customer))
    payment_event_process(payment_event_id=stored.pk)
    customer.save()  # the missing customer is imported

    with django_capture_on_commit_callbacks(execute=False) as jobs:
        page = admin_client.post(reverse("admin:billing_paymentevent_changelist"), {
            "action": "process_again", "_selected_action": [stored.pk]}, follow=True)

    assert "1 event(s) queued to be processed again" in page.content.decode()
    assert PaymentEvent.objects.get(pk=stored.pk).outcome == "pending"
    assert len(jobs) == 1
    assert not Invoice.objects.exists()  # the worker does it


@pytest.mark.django_db
def test_an_events_payload_is_shown_with_its_secrets_redacted(admin_client):
    event = stripe_event("payment_intent.succeeded", payment_intent_object(
        stripe_id=stripe_id("pi"), customer=None, status="succeeded", amount=100))
    secret = event["data"]["object"]["client_secret"]
    stored, _ = payment_event_store(event=event)

    html = admin_client.get(reverse("admin:billing_paymentevent_change",
                                    args=[stored.pk])).content.decode()

    assert event["data"]["object"]["id"] in html
    assert secret not in html
    assert "&quot;client_secret&quot;: &quot;[redacted]&quot;" in html
