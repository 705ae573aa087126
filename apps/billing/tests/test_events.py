"""Stripe events applied in the order they arrive, which is not the order Stripe made them.

Service-level (the worker runs the same function): each test stores events built from
Stripe's example objects and processes them in a chosen order.
"""

from datetime import UTC, datetime

import pytest

from apps.billing.models import Customer, Invoice, Payment, PaymentEvent, Subscription
from apps.billing.samples import stripe_event
from apps.billing.selectors import customer_has_access
from apps.billing.stripe_events import (
    payment_event_mark_failed,
    payment_event_process,
    payment_event_store,
    payment_events_reprocess,
)
from apps.notifications.models import Kind, Notification
from tests.factories import NOW, PERIOD, CustomerFactory, invoice_event, invoice_for, stripe_id
from tests.stripe_samples import charge_object, payment_intent_object, subscription_object


def process(event: dict) -> PaymentEvent:
    stored, _ = payment_event_store(event=event)
    return payment_event_process(payment_event_id=stored.pk)


def subscription_event(event_type: str, customer: Customer, subscription_id: str, *,
                       status: str, created: int, plan: str = "pro") -> dict:
    return stripe_event(event_type, subscription_object(
        stripe_id=subscription_id, customer=customer.stripe_id, status=status, amount=2900,
        plan=plan, period=PERIOD), created=created)


@pytest.mark.django_db
def test_a_subscription_mirrors_stripe_and_access_follows_its_status():
    customer = CustomerFactory()
    sub_id = stripe_id("sub")

    process(subscription_event("customer.subscription.created", customer, sub_id,
                               status="active", created=NOW - 20))
    subscription = Subscription.objects.get(stripe_id=sub_id)
    assert (subscription.plan, subscription.amount_cents, subscription.currency) == (
        "pro", 2900, "usd")
    assert (subscription.current_period_start, subscription.current_period_end) == tuple(
        datetime.fromtimestamp(t, tz=UTC) for t in PERIOD)
    assert customer_has_access(customer_id=customer.pk)

    process(subscription_event("customer.subscription.updated", customer, sub_id,
                               status="past_due", created=NOW - 10))
    assert customer_has_access(customer_id=customer.pk)  # while Stripe retries
    process(subscription_event("customer.subscription.deleted", customer, sub_id,
                               status="canceled", created=NOW))
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.CANCELED
    assert subscription.canceled_at is not None
    assert not customer_has_access(customer_id=customer.pk)


@pytest.mark.django_db
def test_an_update_delivered_before_the_older_create_ends_in_the_newer_state():
    customer = CustomerFactory()
    sub_id = stripe_id("sub")

    updated = process(subscription_event("customer.subscription.updated", customer, sub_id,
                                         status="past_due", created=NOW, plan="team"))
    created = process(subscription_event("customer.subscription.created", customer, sub_id,
                                         status="active", created=NOW - 60, plan="pro"))

    subscription = Subscription.objects.get(stripe_id=sub_id)
    assert (subscription.status, subscription.plan) == ("past_due", "team")
    assert (updated.outcome, updated.detail) == ("processed", "")
    assert created.outcome == "processed"
    assert created.detail.startswith("stale: the row already has an event of")


@pytest.mark.django_db
def test_a_paid_invoice_is_not_reopened_by_a_failure_reported_after_it():
    customer = CustomerFactory()
    invoice_id = stripe_id("in")

    process(invoice_event("invoice.paid", customer, invoice_id=invoice_id, created=NOW - 5))
    late = process(invoice_event("invoice.payment_failed", customer, invoice_id=invoice_id,
                                 status="open", created=NOW))

    invoice = Invoice.objects.get(stripe_id=invoice_id)
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 2900, 0)
    assert "invoice is paid, which Stripe never changes" in late.detail
    assert not Notification.objects.filter(kind=Kind.PAYMENT_FAILED).exists()


@pytest.mark.django_db
def test_each_failed_attempt_is_told_once_and_an_older_one_not_at_all(
        django_capture_on_commit_callbacks):
    customer = CustomerFactory(email="dunned@example.com")
    invoice_id = stripe_id("in")
    retry = NOW + 3 * 86400

    def failed(attempt: int, created: int) -> dict:
        return invoice_event("invoice.payment_failed", customer, invoice_id=invoice_id,
                             status="open", attempt_count=attempt, created=created,
                             next_payment_attempt=retry if attempt < 4 else None)

    with django_capture_on_commit_callbacks():
        process(failed(2, NOW))
        process(failed(1, NOW - 3600))  # delivered late: the customer already heard of 2
        process(failed(4, NOW + 10))

    invoice = Invoice.objects.get(stripe_id=invoice_id)
    assert (invoice.status, invoice.attempt_count, invoice.next_payment_attempt) == (
        "open", 4, None)
    notices = Notification.objects.filter(kind=Kind.PAYMENT_FAILED,
                                          recipient="dunned@example.com").order_by("pk")
    assert [n.idempotency_key.rsplit(":", 1)[1] for n in notices] == ["2", "4"]
    assert f"https://invoice.stripe.com/i/{invoice_id}" in notices[0].body
    assert "That was the last attempt" in notices[1].body


@pytest.mark.django_db
def test_a_refund_reported_late_does_not_lower_what_was_refunded():
    customer = CustomerFactory()
    pi_id = stripe_id("pi")
    process(stripe_event("payment_intent.succeeded", payment_intent_object(
        stripe_id=pi_id, customer=customer.stripe_id, status="succeeded", amount=5000),
        created=NOW - 100))

    def refunded(amount: int, created: int) -> dict:
        return stripe_event("charge.refunded", charge_object(
            stripe_id=stripe_id("ch"), customer=customer.stripe_id, payment_intent=pi_id,
            amount=5000, amount_refunded=amount), created=created)

    process(refunded(5000, NOW))
    stale = process(refunded(1000, NOW - 50))

    payment = Payment.objects.get(stripe_id=pi_id)
    assert (payment.status, payment.amount_received, payment.amount_refunded) == (
        "succeeded", 5000, 5000)
    assert stale.detail.startswith("stale")


@pytest.mark.django_db
@pytest.mark.parametrize("event", [
    lambda: invoice_event("invoice.paid", Customer(stripe_id="cus_elsewhere")),
    lambda: stripe_event("customer.subscription.created", subscription_object(
        stripe_id=stripe_id("sub"), customer="cus_elsewhere", status="active", amount=1,
        plan="x", period=PERIOD)),
    lambda: stripe_event("payment_intent.succeeded", payment_intent_object(
        stripe_id=stripe_id("pi"), customer=None, status="succeeded", amount=100)),
    lambda: stripe_event("charge.refunded", charge_object(
        stripe_id=stripe_id("ch"), customer=None, payment_intent="pi_elsewhere", amount=100,
        amount_refunded=100)),
], ids=["invoice of another customer", "subscription of another customer",
        "payment without a customer", "refund of an unknown payment"])
def test_an_event_about_an_object_not_known_here_is_unmatched_and_changes_nothing(event):
    processed = process(event())

    assert processed.outcome == PaymentEvent.Outcome.UNMATCHED
    assert "not known here" in processed.detail or "has no customer" in processed.detail
    assert not Invoice.objects.exists()
    assert not Subscription.objects.exists()
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_an_unmatched_event_is_processed_again_once_its_customer_exists(
        django_capture_on_commit_callbacks):
    customer = Customer(stripe_id=stripe_id("cus"), email="late-import@example.com")
    event = process(invoice_event("invoice.paid", customer))
    assert event.outcome == "unmatched"

    customer.save()
    with django_capture_on_commit_callbacks() as jobs:
        assert payment_events_reprocess(payment_event_ids=[event.pk]) == 1
        assert payment_events_reprocess(payment_event_ids=[event.pk]) == 0  # now pending
    assert len(jobs) == 1
    event = payment_event_process(payment_event_id=event.pk)
    assert event.outcome == "processed"
    assert Invoice.objects.get(customer=customer).status == "paid"


@pytest.mark.django_db
def test_a_processed_event_processed_again_changes_nothing(django_capture_on_commit_callbacks):
    customer = CustomerFactory()
    stored, _ = payment_event_store(event=invoice_event("invoice.paid", customer))
    with django_capture_on_commit_callbacks() as receipts:
        for _ in range(3):
            payment_event_process(payment_event_id=stored.pk)
    assert len(receipts) == 1
    assert Invoice.objects.filter(customer=customer).count() == 1


@pytest.mark.django_db
def test_the_apps_own_charge_is_settled_by_stripe_when_its_request_timed_out():
    """The charge request died before its answer, but Stripe charged: the event says so."""
    invoice = invoice_for("timed-out@example.com")
    event = stripe_event("payment_intent.succeeded", payment_intent_object(
        stripe_id=stripe_id("pi"), customer=invoice.customer.stripe_id, status="succeeded",
        amount=invoice.amount_due, metadata={"invoice_id": str(invoice.pk)}))

    process(event)

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", invoice.amount_due)
    assert Payment.objects.get(stripe_id=event["data"]["object"]["id"]).invoice == invoice
    assert Notification.objects.filter(
        idempotency_key=f"receipt:invoice:{invoice.pk}").count() == 1


@pytest.mark.django_db
def test_a_failed_event_is_processed_when_its_dead_letter_is_replayed():
    customer = CustomerFactory()
    stored, _ = payment_event_store(event=invoice_event("invoice.paid", customer))
    payment_event_mark_failed(payment_event_id=stored.pk)
    assert PaymentEvent.objects.get(pk=stored.pk).outcome == "failed"

    assert payment_event_process(payment_event_id=stored.pk).outcome == "processed"
    payment_event_mark_failed(payment_event_id=stored.pk)  # a stale dead letter of it
    assert PaymentEvent.objects.get(pk=stored.pk).outcome == "processed"
