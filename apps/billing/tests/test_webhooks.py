"""The Stripe webhook end to end: signed events stored once, processed on critical."""

import time

import pytest

from apps.billing.models import Invoice, PaymentEvent
from apps.notifications.models import Kind, Notification
from tests.factories import WEBHOOK_URL, invoice_for, payment_event, post_event
from tests.fixtures import last_outbox_id, wait_for, wait_for_outbox_jobs
from workers.dead_letters.models import DeadLetter


def test_payment_succeeded_marks_the_invoice_paid_and_sends_one_receipt(
        live_workers, client, smtp_server, test_redis):
    jobs_before = last_outbox_id()
    invoice = invoice_for("payer@example.com")
    payment = payment_event("payment.succeeded", invoice)

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
    invoice = invoice_for(to)

    post_event(client, payment_event("payment.succeeded", invoice))

    wait_for(lambda: smtp_server.to(to), what="the receipt after its retry")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert Notification.objects.get(recipient=to).attempts == 2
    assert len(smtp_server.to(to)) == 1


def test_unknown_event_types_are_stored_and_acknowledged(live_workers, client):
    response = post_event(client, payment_event("customer.tax_id.created"))

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
    response = post_event(client, payment_event("payment.succeeded"), **kwargs)

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
    assert post_event(client, payment_event("payment.succeeded")).status_code == 503
    assert client.get(WEBHOOK_URL).status_code == 405
