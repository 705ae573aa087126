"""Billing services: charges, dunning and invoice generation."""

from datetime import date, timedelta

import pytest
from celery import Task
from django.utils import timezone

from apps.billing.gateway import GatewayUnavailable
from apps.billing.models import Customer, Invoice, Subscription
from apps.billing.services import dunning_enqueue_due, invoice_charge, invoices_generate_due
from apps.notifications.models import Kind, Notification
from tests.factories import invoice_for


@pytest.mark.django_db
def test_a_declined_charge_walks_the_dunning_schedule_then_marks_past_due(
        stripe_api, settings, django_capture_on_commit_callbacks):
    settings.BILLING_DUNNING_SCHEDULE_DAYS = [1, 3]
    invoice = invoice_for("late@example.com", customer_id="cus_declined")
    plan = []
    for _ in range(3):
        with django_capture_on_commit_callbacks():
            charged = invoice_charge(invoice_id=invoice.pk)
        plan.append((charged.charge_attempts, charged.next_charge_at))
        Invoice.objects.filter(pk=invoice.pk).update(next_charge_at=timezone.now())

    assert [attempts for attempts, _ in plan] == [1, 2, 3]
    first_retry, second_retry, after_last = (when for _, when in plan)
    assert timedelta(hours=23) < first_retry - timezone.now() <= timedelta(days=1)
    assert timedelta(days=2, hours=23) < second_retry - timezone.now() <= timedelta(days=3)
    assert after_last is None
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    assert "declined" in invoice.last_failure
    assert invoice.subscription.status == Subscription.Status.PAST_DUE
    assert Notification.objects.filter(kind=Kind.PAYMENT_FAILED,
                                       recipient="late@example.com").count() == 1
    keys = [request["idempotency_key"] for request in stripe_api.requests]
    assert keys == [f"invoice-{invoice.pk}-attempt-{n}" for n in (1, 2, 3)]


@pytest.mark.django_db
def test_a_charge_that_is_not_due_yet_is_not_attempted(stripe_api):
    invoice = invoice_for("early@example.com", customer_id="cus_declined")
    Invoice.objects.filter(pk=invoice.pk).update(
        next_charge_at=timezone.now() + timedelta(hours=1))
    invoice_charge(invoice_id=invoice.pk)
    assert stripe_api.requests == []


@pytest.mark.django_db
def test_a_successful_charge_pays_the_invoice_and_reactivates_the_subscription(
        stripe_api, django_capture_on_commit_callbacks):
    invoice = invoice_for("ok@example.com")
    Subscription.objects.filter(pk=invoice.subscription_id).update(status="past_due")

    with django_capture_on_commit_callbacks() as callbacks:
        invoice_charge(invoice_id=invoice.pk)
        invoice_charge(invoice_id=invoice.pk)  # a duplicate job finds it paid

    invoice.refresh_from_db()
    assert (invoice.status, invoice.charge_attempts) == (Invoice.Status.PAID, 1)
    assert invoice.subscription.status == Subscription.Status.ACTIVE
    assert len(stripe_api.requests) == 1
    assert stripe_api.requests[0]["authorization"] == "Bearer sk_test_local"
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
                                      next_billing_date=date(2026, 1, 31))
    Subscription.objects.create(customer=customer, plan="later", amount_cents=1000,
                                next_billing_date=date(2026, 3, 1))
    Subscription.objects.create(customer=customer, plan="gone", amount_cents=1000,
                                status="canceled", next_billing_date=date(2026, 1, 1))

    with django_capture_on_commit_callbacks() as charges:
        assert invoices_generate_due(today=date(2026, 2, 1)) == 1
        assert invoices_generate_due(today=date(2026, 2, 1)) == 0

    invoice = Invoice.objects.get()
    assert (invoice.subscription_id, invoice.period_start, invoice.period_end) == (
        due.pk, date(2026, 1, 31), date(2026, 2, 28))
    due.refresh_from_db()
    assert due.next_billing_date == date(2026, 2, 28)
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
    Invoice.objects.filter(pk=due.pk).update(next_charge_at=timezone.now() - timedelta(1))
    Invoice.objects.filter(pk=later.pk).update(next_charge_at=timezone.now() + timedelta(1))

    assert dunning_enqueue_due(now=timezone.now()) == 1
    assert dunning_enqueue_due(now=timezone.now()) == 0  # the first charge has not run yet
    assert queued == [(due.pk,)]
