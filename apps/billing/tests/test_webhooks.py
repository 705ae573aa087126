"""The Stripe webhook end to end: events signed with the stripe library's scheme, built from
Stripe's example objects, stored once and processed by a real worker on critical."""

import json
import logging
import time
from collections.abc import Callable

import pytest

from apps.billing.models import Customer, Invoice, Payment, PaymentEvent, Subscription
from apps.billing.samples import stripe_event
from apps.billing.stripe_events import EVENT_HANDLERS
from apps.billing.tasks import process_payment_event
from apps.notifications.models import Kind, Notification
from tests.factories import (
    NOW,
    PERIOD,
    WEBHOOK_URL,
    CustomerFactory,
    invoice_event,
    post_event,
    stripe_id,
)
from tests.fixtures import last_outbox_id, wait_for, wait_for_outbox_jobs
from tests.stripe_samples import charge_object, payment_intent_object, subscription_object
from workers.dead_letters.models import DeadLetter


def processed(event: dict) -> PaymentEvent:
    """The stored event once the worker has given it its outcome."""
    return wait_for(lambda: PaymentEvent.objects.exclude(outcome="pending").filter(
        event_id=event["id"]).first(), what=f"{event['type']} processed")


def test_invoice_paid_delivered_three_times_marks_it_paid_and_sends_one_receipt(
        live_workers, client, smtp_server, test_redis):
    jobs_before = last_outbox_id()
    customer = CustomerFactory(email="payer@example.com")
    event = invoice_event("invoice.paid", customer)

    responses = [post_event(client, event) for _ in range(3)]  # Stripe retries

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["duplicate"] for r in responses] == [False, True, True]
    wait_for(lambda: smtp_server.to("payer@example.com"), what="the receipt")
    invoice = Invoice.objects.get(stripe_id=event["data"]["object"]["id"])
    assert (invoice.status, invoice.amount_paid, invoice.customer) == ("paid", 2900, customer)
    assert invoice.paid_at is not None
    assert processed(event).outcome == "processed"
    assert PaymentEvent.objects.filter(event_id=event["id"]).count() == 1
    wait_for_outbox_jobs(test_redis, after_id=jobs_before)
    assert len(smtp_server.to("payer@example.com")) == 1
    assert Notification.objects.get(kind=Kind.PAYMENT_RECEIPT).status == "sent"


def test_each_step_of_the_chain_is_retried_on_its_own(live_workers, client, smtp_server):
    to = f"busy1-{time.time_ns()}@example.com"  # the receipt step fails once, then succeeds
    customer = CustomerFactory(email=to)

    post_event(client, invoice_event("invoice.paid", customer))

    wait_for(lambda: smtp_server.to(to), what="the receipt after its retry")
    # The row is marked once the mail is out: wait for that commit, not the delivery alone
    # (and leave no worker writing when the next test empties the tables).
    wait_for(lambda: Notification.objects.filter(recipient=to, status="sent").exists(),
             what="the receipt's row marked sent")
    assert Invoice.objects.get(customer=customer).status == Invoice.Status.PAID
    assert Notification.objects.get(recipient=to).attempts == 2
    assert len(smtp_server.to(to)) == 1


def _subscription(event_type: str, status: str) -> Callable[[Customer], dict]:
    def build(customer: Customer) -> dict:
        return stripe_event(event_type, subscription_object(
            stripe_id=f"sub_{customer.stripe_id}", customer=customer.stripe_id, status=status,
            amount=4900, plan="team", period=PERIOD))
    return build


def _payment(event_type: str, status: str, failure: str = "") -> Callable[[Customer], dict]:
    def build(customer: Customer) -> dict:
        return stripe_event(event_type, payment_intent_object(
            stripe_id=f"pi_{customer.stripe_id}", customer=customer.stripe_id, status=status,
            amount=4900, failure=failure))
    return build


def _refund(customer: Customer) -> dict:
    Payment.objects.create(stripe_id=f"pi_{customer.stripe_id}", customer=customer,
                           status="succeeded", amount=4900, amount_received=4900,
                           currency="usd")
    return stripe_event("charge.refunded", charge_object(
        stripe_id=stripe_id("ch"), customer=customer.stripe_id,
        payment_intent=f"pi_{customer.stripe_id}", amount=4900, amount_refunded=4900))


def _invoice(event_type: str, status: str) -> Callable[[Customer], dict]:
    def build(customer: Customer) -> dict:
        return invoice_event(event_type, customer, invoice_id=f"in_{customer.stripe_id}",
                             status=status, next_payment_attempt=NOW + 86400)
    return build


EVENTS = {
    "invoice.paid": (_invoice("invoice.paid", "paid"),
                     lambda c: Invoice.objects.get(customer=c).status == "paid"),
    "invoice.payment_failed": (
        _invoice("invoice.payment_failed", "open"),
        lambda c: Invoice.objects.get(customer=c).next_payment_attempt is not None
        and Notification.objects.filter(kind=Kind.PAYMENT_FAILED, recipient=c.email).exists()),
    "customer.subscription.created": (
        _subscription("customer.subscription.created", "active"),
        lambda c: Subscription.objects.get(customer=c).status == "active"),
    "customer.subscription.updated": (
        _subscription("customer.subscription.updated", "past_due"),
        lambda c: Subscription.objects.get(customer=c).status == "past_due"),
    "customer.subscription.deleted": (
        _subscription("customer.subscription.deleted", "canceled"),
        lambda c: Subscription.objects.get(customer=c).status == "canceled"),
    "payment_intent.succeeded": (
        _payment("payment_intent.succeeded", "succeeded"),
        lambda c: Payment.objects.get(customer=c).amount_received == 4900),
    "payment_intent.payment_failed": (
        _payment("payment_intent.payment_failed", "requires_payment_method",
                 failure="Your card was declined."),
        lambda c: Payment.objects.get(customer=c).last_failure == "Your card was declined."),
    "charge.refunded": (_refund, lambda c: Payment.objects.get(customer=c).amount_refunded
                        == 4900),
}


@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_each_stripe_event_type_is_applied_by_the_worker(live_workers, client, test_redis,
                                                         event_type):
    jobs_before = last_outbox_id()
    customer = CustomerFactory()
    build, applied = EVENTS[event_type]
    event = build(customer)

    assert post_event(client, event).status_code == 200

    assert processed(event).outcome == "processed"
    # The jobs the event started (a receipt, a notice) have run: none is left to fail
    # in the next test, whose database no longer holds their rows.
    wait_for_outbox_jobs(test_redis, after_id=jobs_before)
    assert applied(customer)
    assert not DeadLetter.objects.exists()


def test_the_required_event_types_are_all_handled():
    assert set(EVENTS) <= set(EVENT_HANDLERS)


def test_an_update_delivered_before_the_older_create_ends_in_the_newer_state(live_workers,
                                                                             client):
    customer = CustomerFactory()
    newer = stripe_event("customer.subscription.updated", subscription_object(
        stripe_id="sub_reordered", customer=customer.stripe_id, status="past_due",
        amount=4900, plan="team", period=PERIOD), created=NOW)
    older = stripe_event("customer.subscription.created", subscription_object(
        stripe_id="sub_reordered", customer=customer.stripe_id, status="incomplete",
        amount=2900, plan="pro", period=PERIOD), created=NOW - 30)

    post_event(client, newer)
    processed(newer)
    post_event(client, older)

    assert processed(older).detail.startswith("stale")
    subscription = Subscription.objects.get(stripe_id="sub_reordered")
    assert (subscription.status, subscription.plan, subscription.amount_cents) == (
        "past_due", "team", 4900)


def test_unknown_objects_and_types_are_kept_with_their_outcome_not_dead_lettered(
        live_workers, client):
    stranger = invoice_event("invoice.paid", Customer(stripe_id="cus_elsewhere"))
    unhandled = stripe_event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"})

    for event in (stranger, unhandled):
        assert post_event(client, event).status_code == 200

    assert processed(stranger).outcome == "unmatched"
    assert processed(stranger).detail == "customer cus_elsewhere is not known here"
    assert processed(unhandled).outcome == "ignored"
    assert not Invoice.objects.exists()
    assert not DeadLetter.objects.exists()


def test_an_event_that_cannot_be_applied_is_failed_and_in_the_dead_letter_table(
        live_workers, client):
    customer = CustomerFactory()
    event = invoice_event("invoice.paid", customer)
    del event["data"]["object"]["amount_due"]  # not what the pinned version sends

    post_event(client, event)

    row = wait_for(lambda: DeadLetter.objects.filter(
        task_name=process_payment_event.name).first(), what="the dead letter")
    assert "amount_due" in row.message
    stored = processed(event)
    assert stored.outcome == "failed"
    assert row.args == [stored.pk]
    assert not Invoice.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"secret": "whsec_someone_else"}, "signature rejected"),
    ({"header": ""}, "signature rejected"),
    ({"header": "t=abc,v1=00"}, "signature rejected"),
    ({"timestamp": int(time.time()) - 301}, "signature rejected"),
])
def test_untrusted_requests_are_refused_and_nothing_is_stored(client, test_redis, kwargs,
                                                              reason):
    event = invoice_event("invoice.paid", CustomerFactory())
    queued = test_redis.llen("critical")  # the session's Redis: earlier tests' jobs may wait
    response = post_event(client, event, **kwargs)

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert not PaymentEvent.objects.exists()
    assert test_redis.llen("critical") == queued


def _without(field: str) -> bytes:
    event = stripe_event("invoice.paid", {"id": "in_1"})
    del event[field]
    return json.dumps(event).encode()


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "body is not JSON"),
    (b"[]", "body must be a JSON object"),
    (_without("id"), "'id' must be"),
    (_without("api_version"), "'api_version' must be"),
    (_without("created"), "'created' must be a Unix timestamp"),
    (_without("data"), "'data.object' must be"),
])
def test_malformed_events_are_refused_with_the_reason(client, test_redis, body, reason):
    queued = test_redis.llen("critical")
    response = post_event(client, body)

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert not PaymentEvent.objects.exists()
    assert test_redis.llen("critical") == queued


@pytest.mark.django_db
def test_an_event_of_another_api_version_is_refused_with_a_log_line(client, test_redis,
                                                                    settings, caplog):
    event = invoice_event("invoice.paid", CustomerFactory()) | {"api_version": "2024-06-20"}

    queued = test_redis.llen("critical")
    with caplog.at_level(logging.WARNING, logger="apps.billing.stripe_events"):
        response = post_event(client, event)

    assert response.status_code == 400
    assert response.json()["error"] == (f"API version 2024-06-20 is not the pinned "
                                        f"{settings.STRIPE_API_VERSION} (STRIPE_API_VERSION)")
    [line] = [r.getMessage() for r in caplog.records if r.name == "apps.billing.stripe_events"]
    assert line.startswith(f"refused Stripe event {event['id']} (invoice.paid): API version "
                           "2024-06-20 is not STRIPE_API_VERSION")
    assert not PaymentEvent.objects.exists()
    assert test_redis.llen("critical") == queued


@pytest.mark.django_db
def test_without_a_configured_secret_every_event_is_refused(client, settings):
    settings.BILLING_WEBHOOK_SECRET = ""
    event = invoice_event("invoice.paid", CustomerFactory())
    assert post_event(client, event).status_code == 503
    assert client.get(WEBHOOK_URL).status_code == 405
