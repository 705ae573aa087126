"""Billing services: the app's own invoicing, charges and dunning (subscriptions without a
Stripe subscription), and that they leave Stripe's invoices alone."""

from datetime import UTC, datetime, timedelta

import pytest
from celery import Task
from django.utils import timezone

from apps.billing.gateway import GatewayUnavailable
from apps.billing.models import Customer, Invoice, Payment, Subscription
from apps.billing.services import dunning_enqueue_due, invoice_charge, invoices_generate_due
from apps.notifications.models import Kind, Notification
from tests.factories import CustomerFactory, InvoiceFactory, invoice_for, stripe_id


@pytest.mark.django_db
def test_a_declined_charge_walks_the_dunning_schedule_then_marks_past_due(
        stripe_api, settings, django_capture_on_commit_callbacks):
    settings.BILLING_DUNNING_SCHEDULE_DAYS = [1, 3]
    invoice = invoice_for("late@example.com", customer_id="cus_declined")
    plan = []
    for _ in range(3):
        with django_capture_on_commit_callbacks():
            charged = invoice_charge(invoice_id=invoice.pk)
        plan.append((charged.attempt_count, charged.next_payment_attempt))
        Invoice.objects.filter(pk=invoice.pk).update(next_payment_attempt=timezone.now())

    assert [attempts for attempts, _ in plan] == [1, 2, 3]
    first_retry, second_retry, after_last = (when for _, when in plan)
    assert timedelta(hours=23) < first_retry - timezone.now() <= timedelta(days=1)
    assert timedelta(days=2, hours=23) < second_retry - timezone.now() <= timedelta(days=3)
    assert after_last is None
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    assert "declined" in invoice.last_failure
    assert invoice.subscription.status == Subscription.Status.PAST_DUE
    notices = Notification.objects.filter(kind=Kind.PAYMENT_FAILED,
                                          recipient="late@example.com").order_by("pk")
    assert [n.idempotency_key for n in notices] == [
        f"payment-failed:invoice:{invoice.pk}:attempt:{n}" for n in (1, 2, 3)]
    assert "We will try again on" in notices[0].body
    assert "That was the last attempt" in notices[2].body
    requests = stripe_api.requests
    assert [r["idempotency_key"] for r in requests] == [
        f"invoice-{invoice.pk}-attempt-{n}" for n in (1, 2, 3)]
    assert {r["metadata"]["invoice_id"] for r in requests} == {str(invoice.pk)}
    assert Payment.objects.filter(invoice=invoice, status="requires_payment_method").count() == 3


@pytest.mark.django_db
def test_a_charge_that_is_not_due_yet_is_not_attempted(stripe_api):
    invoice = invoice_for("early@example.com", customer_id="cus_declined")
    Invoice.objects.filter(pk=invoice.pk).update(
        next_payment_attempt=timezone.now() + timedelta(hours=1))
    invoice_charge(invoice_id=invoice.pk)
    assert stripe_api.requests == []


@pytest.mark.django_db
def test_a_successful_charge_pays_the_invoice_and_reactivates_the_subscription(
        stripe_api, settings, django_capture_on_commit_callbacks):
    invoice = invoice_for("ok@example.com")
    Subscription.objects.filter(pk=invoice.subscription_id).update(status="past_due")

    with django_capture_on_commit_callbacks() as callbacks:
        invoice_charge(invoice_id=invoice.pk)
        invoice_charge(invoice_id=invoice.pk)  # a duplicate job finds it paid

    invoice.refresh_from_db()
    assert (invoice.status, invoice.attempt_count) == (Invoice.Status.PAID, 1)
    assert (invoice.amount_paid, invoice.amount_remaining) == (invoice.amount_due, 0)
    assert invoice.subscription.status == Subscription.Status.ACTIVE
    assert len(stripe_api.requests) == 1
    assert stripe_api.requests[0]["authorization"] == "Bearer sk_test_local"
    assert stripe_api.requests[0]["stripe_version"] == settings.STRIPE_API_VERSION
    payment = Payment.objects.get(invoice=invoice)
    assert (payment.status, payment.amount_received) == ("succeeded", invoice.amount_due)
    assert len(callbacks) == 1  # one receipt job


@pytest.mark.django_db
def test_a_retried_charge_reuses_its_idempotency_key(stripe_api):
    invoice = invoice_for("flaky@example.com", customer_id="cus_flaky")
    with pytest.raises(GatewayUnavailable):
        invoice_charge(invoice_id=invoice.pk)
    invoice_charge(invoice_id=invoice.pk)
    first, second = (request["idempotency_key"] for request in stripe_api.requests)
    assert first == second
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


@pytest.mark.django_db
def test_invoice_generation_is_idempotent_per_subscription_and_period(
        django_capture_on_commit_callbacks):
    customer = Customer.objects.create(email="sub@example.com")
    due = Subscription.objects.create(customer=customer, plan="pro", amount_cents=1000,
                                      current_period_end=datetime(2026, 1, 31, tzinfo=UTC))
    Subscription.objects.create(customer=customer, plan="later", amount_cents=1000,
                                current_period_end=datetime(2026, 3, 1, tzinfo=UTC))
    Subscription.objects.create(customer=customer, plan="gone", amount_cents=1000,
                                status="canceled",
                                current_period_end=datetime(2026, 1, 1, tzinfo=UTC))
    Subscription.objects.create(customer=customer, plan="stripe's", amount_cents=1000,
                                stripe_id=stripe_id("sub"),  # Stripe invoices this one
                                current_period_end=datetime(2026, 1, 1, tzinfo=UTC))
    now = datetime(2026, 2, 1, tzinfo=UTC)

    with django_capture_on_commit_callbacks() as charges:
        assert invoices_generate_due(now=now) == 1
        assert invoices_generate_due(now=now) == 0

    invoice = Invoice.objects.get()
    assert (invoice.subscription_id, invoice.customer_id) == (due.pk, customer.pk)
    assert (invoice.period_start, invoice.period_end) == (
        datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC))
    due.refresh_from_db()
    assert due.current_period_end == datetime(2026, 2, 28, tzinfo=UTC)
    assert len(charges) == 1


@pytest.mark.django_db
def test_dunning_queues_only_due_invoices_and_not_while_their_charge_waits(monkeypatch,
                                                                          test_redis):
    queued = []
    # The real dedup claim in Redis runs; only the final send is captured.
    def capture(task, args=None, kwargs=None, **options):
        queued.append(args)
        return task.AsyncResult(options["task_id"])

    monkeypatch.setattr(Task, "apply_async", capture)
    due = invoice_for("a@example.com")
    later = invoice_for("b@example.com")
    # Stripe retries its own invoices; the app's dunning never charges one.
    stripes = InvoiceFactory(subscription=None, customer=CustomerFactory(),
                             stripe_id=stripe_id("in"))
    Invoice.objects.filter(pk__in=[due.pk, stripes.pk]).update(
        next_payment_attempt=timezone.now() - timedelta(1))
    Invoice.objects.filter(pk=later.pk).update(
        next_payment_attempt=timezone.now() + timedelta(1))

    assert dunning_enqueue_due(now=timezone.now()) == 1
    assert dunning_enqueue_due(now=timezone.now()) == 0  # the first charge has not run yet
    assert queued == [(due.pk,)]
