"""Billing: the signed webhook end to end, idempotent processing, charges and dunning."""

import json
import time
from datetime import date, timedelta

import pytest
import stripe
from celery import Task
from django.utils import timezone

from apps.billing.gateway import GatewayRejected, GatewayUnavailable
from apps.billing.models import Customer, Invoice, PaymentEvent, Subscription
from apps.billing.services import dunning_enqueue_due, invoice_charge, invoices_generate_due
from apps.notifications.models import Kind, Notification
from tests.fixtures import last_outbox_id, wait_for, wait_for_outbox_jobs
from workers.models import DeadLetter

SECRET = "whsec_test_secret"
URL = "/webhooks/billing/"


def make_invoice(email: str, customer_id: str = "cus_ok") -> Invoice:
    customer = Customer.objects.create(email=email, provider_customer_id=customer_id)
    subscription = Subscription.objects.create(customer=customer, plan="pro", amount_cents=2900,
                                               next_billing_date=date(2026, 12, 1))
    return Invoice.objects.create(subscription=subscription, number=f"INV-{time.time_ns()}",
                                  period_start=date(2026, 11, 1), period_end=date(2026, 12, 1),
                                  amount_cents=2900, currency="usd")


def post_event(client, event: dict | bytes, *, secret: str = SECRET,
               timestamp: int | None = None, header: str | None = None):
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    if header is None:
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret,
                                                                   timestamp=timestamp)
    return client.post(URL, body, content_type="application/json",
                       headers={"Stripe-Signature": header} if header else {})


def event(kind: str, invoice: Invoice | None = None, event_id: str | None = None) -> dict:
    obj = {"id": f"pi_{time.time_ns()}", "invoice": invoice.number if invoice else None}
    return {"id": event_id or f"evt_{time.time_ns()}", "type": kind, "data": {"object": obj}}


def test_payment_succeeded_marks_the_invoice_paid_and_sends_one_receipt(
        live_workers, client, smtp_server, test_redis):
    jobs_before = last_outbox_id()
    invoice = make_invoice("payer@example.com")
    payment = event("payment.succeeded", invoice)

    responses = [post_event(client, payment) for _ in range(3)]  # the provider retries

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["duplicate"] for r in responses] == [False, True, True]
    wait_for(lambda: smtp_server.to("payer@example.com"), what="the receipt")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert invoice.payment_reference == payment["data"]["object"]["id"]
    assert PaymentEvent.objects.filter(event_id=payment["id"]).count() == 1
    wait_for_outbox_jobs(test_redis, after_id=jobs_before)
    assert len(smtp_server.to("payer@example.com")) == 1
    assert Notification.objects.get(kind=Kind.PAYMENT_RECEIPT).status == "sent"


def test_each_step_of_the_chain_is_retried_on_its_own(live_workers, client, smtp_server):
    to = f"busy1-{time.time_ns()}@example.com"  # the receipt step fails once, then succeeds
    invoice = make_invoice(to)

    post_event(client, event("payment.succeeded", invoice))

    wait_for(lambda: smtp_server.to(to), what="the receipt after its retry")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert Notification.objects.get(recipient=to).attempts == 2
    assert len(smtp_server.to(to)) == 1


def test_unknown_event_types_are_stored_and_acknowledged(live_workers, client):
    response = post_event(client, event("customer.tax_id.created"))

    assert response.status_code == 200
    stored = PaymentEvent.objects.get(type="customer.tax_id.created")
    wait_for(lambda: PaymentEvent.objects.get(pk=stored.pk).outcome == "ignored")
    assert not DeadLetter.objects.exists()


def test_an_event_for_an_unknown_invoice_is_dead_lettered(live_workers, client):
    post_event(client, {"id": "evt_orphan", "type": "payment.succeeded",
                        "data": {"object": {"invoice": "INV-nope"}}})
    row = wait_for(lambda: DeadLetter.objects.filter(
        task_name="apps.billing.tasks.process_payment_event").first())
    assert "INV-nope" in row.message
    assert row.attempts == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"secret": "whsec_someone_else"}, "signature rejected"),
    ({"header": ""}, "signature rejected"),
    ({"header": "t=abc,v1=00"}, "signature rejected"),
    ({"timestamp": int(time.time()) - 301}, "signature rejected"),
])
def test_untrusted_requests_are_refused_and_nothing_is_stored(client, test_redis, kwargs,
                                                              reason):
    response = post_event(client, event("payment.succeeded"), **kwargs)

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert not PaymentEvent.objects.exists()
    assert test_redis.llen("critical") == 0


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "body is not JSON"),
    (b"[]", "body must be a JSON object"),
    (b'{"type": "payment.succeeded", "data": {"object": {}}}', "'id' must be"),
    (b'{"id": "evt_1", "type": "payment.succeeded", "data": {}}', "'data.object' must be"),
])
def test_malformed_events_are_refused_with_the_reason(client, test_redis, body, reason):
    response = post_event(client, body)

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert not PaymentEvent.objects.exists()
    assert test_redis.llen("critical") == 0


@pytest.mark.django_db
def test_without_a_configured_secret_every_event_is_refused(client, settings):
    settings.BILLING_WEBHOOK_SECRET = ""
    assert post_event(client, event("payment.succeeded")).status_code == 503
    assert client.get(URL).status_code == 405


@pytest.mark.django_db
def test_a_declined_charge_walks_the_dunning_schedule_then_marks_past_due(
        stripe_api, settings, django_capture_on_commit_callbacks):
    settings.BILLING_DUNNING_SCHEDULE_DAYS = [1, 3]
    invoice = make_invoice("late@example.com", customer_id="cus_declined")
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
    invoice = make_invoice("early@example.com", customer_id="cus_declined")
    Invoice.objects.filter(pk=invoice.pk).update(
        next_charge_at=timezone.now() + timedelta(hours=1))
    invoice_charge(invoice_id=invoice.pk)
    assert stripe_api.requests == []


@pytest.mark.django_db
def test_a_successful_charge_pays_the_invoice_and_reactivates_the_subscription(
        stripe_api, django_capture_on_commit_callbacks):
    invoice = make_invoice("ok@example.com")
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
@pytest.mark.parametrize(("customer", "error"), [
    ("cus_flaky", GatewayUnavailable), ("cus_ratelimited", GatewayUnavailable),
    ("cus_unknown", GatewayRejected),
])
def test_gateway_errors_are_classified_and_change_nothing(stripe_api, customer, error):
    invoice = make_invoice("x@example.com", customer_id=customer)
    with pytest.raises(error):
        invoice_charge(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.charge_attempts) == (Invoice.Status.OPEN, 0)


@pytest.mark.django_db
def test_a_retried_charge_reuses_its_idempotency_key(stripe_api):
    invoice = make_invoice("flaky@example.com", customer_id="cus_flaky")
    with pytest.raises(GatewayUnavailable):
        invoice_charge(invoice_id=invoice.pk)
    invoice_charge(invoice_id=invoice.pk)
    first, second = (request["idempotency_key"] for request in stripe_api.requests)
    assert first == second
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


@pytest.mark.django_db
def test_a_missing_api_key_is_a_permanent_error(settings):
    settings.STRIPE_API_KEY = ""
    invoice = make_invoice("nokey@example.com")
    with pytest.raises(GatewayRejected, match="STRIPE_API_KEY"):
        invoice_charge(invoice_id=invoice.pk)


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
    due = make_invoice("a@example.com")
    later = make_invoice("b@example.com")
    Invoice.objects.filter(pk=due.pk).update(next_charge_at=timezone.now() - timedelta(1))
    Invoice.objects.filter(pk=later.pk).update(next_charge_at=timezone.now() + timedelta(1))

    assert dunning_enqueue_due(now=timezone.now()) == 1
    assert dunning_enqueue_due(now=timezone.now()) == 0  # the first charge has not run yet
    assert queued == [(due.pk,)]
