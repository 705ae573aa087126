"""The same payment work delivered three times (twice redelivered, once requeued): one
charge and one receipt, whichever way the repeats arrive."""

import time

from django.db import transaction

from apps.billing.models import Invoice, PaymentEvent
from apps.billing.tasks import charge_invoice, process_payment_event
from apps.notifications.models import Kind, Notification
from tests.factories import CustomerFactory, invoice_event, invoice_for, post_event
from tests.faults.harness import Ledger
from tests.fixtures import last_outbox_id, wait_for, wait_for_outbox_jobs
from tests.tasks import FINISHED
from workers.core.models import OutboxMessage
from workers.dead_letters.services import dead_letter_record, dead_letters_requeue


def repeat(task, args: list, task_id: str, test_redis) -> None:
    """Deliver the job twice more with its own id (redeliveries), then replay it from the
    dead-letter table (a requeue, new id), and wait until all three have run."""
    for _ in range(2):
        task.apply_async(args, task_id=task_id)
    row = dead_letter_record(task_id=f"{task_id}-failed-copy", task_name=task.name,
                             queue="critical", args=args, kwargs={},
                             exception=RuntimeError("operator replay"), traceback="",
                             attempts=1, worker="", replay_of_id=None)
    replay_id = dead_letters_requeue(dead_letter_ids=[row.pk],
                                     actor="fault-test").requeued[row.pk]
    wait_for(lambda: int(test_redis.hget(FINISHED, task_id) or 0) >= 3
             and test_redis.hget(FINISHED, replay_id), what="the repeats")


def receipts(invoice: Invoice) -> int:
    return Notification.objects.filter(kind=Kind.PAYMENT_RECEIPT,
                                       idempotency_key=f"receipt:invoice:{invoice.pk}").count()


def test_a_payment_processed_three_times_charges_once_and_sends_one_receipt(
        live_workers, client, smtp_server, stripe_api, test_redis, record_ledger):
    started = time.monotonic()
    jobs_before = last_outbox_id()
    # A Stripe invoice.paid, delivered three times by Stripe, then its job repeated.
    payment = invoice_event("invoice.paid",
                            CustomerFactory(email="event-payer@example.com"))
    assert [post_event(client, payment).status_code for _ in range(3)] == [200] * 3
    stored = PaymentEvent.objects.get(event_id=payment["id"])
    job = OutboxMessage.objects.get(task_name=process_payment_event.name, args=[stored.pk])
    wait_for(lambda: smtp_server.to("event-payer@example.com"), what="the event's receipt")
    repeat(process_payment_event, [stored.pk], job.task_id, test_redis)

    # A charge job, sent through the outbox, then repeated the same ways.
    charged = invoice_for("charged@example.com")
    with transaction.atomic():
        charge = charge_invoice.delay_via_outbox(charged.pk)
    wait_for(lambda: smtp_server.to("charged@example.com"), what="the charge's receipt")
    repeat(charge_invoice, [charged.pk], charge.task_id, test_redis)
    # Any receipt a repeat wrongly queued is an outbox job: each has run by now.
    wait_for_outbox_jobs(test_redis, after_id=jobs_before)

    paid_by_event = Invoice.objects.get(stripe_id=payment["data"]["object"]["id"])
    for invoice in (paid_by_event, charged):
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAID
        assert receipts(invoice) == 1
    assert len(stripe_api.requests) == 1  # the charge; the event needed none
    mails = [smtp_server.to(f"{who}@example.com") for who in ("event-payer", "charged")]
    assert [len(sent) for sent in mails] == [1, 1]
    record_ledger(Ledger(fault="payment event and charge, each run 3x", sent=2, completed=2,
                         dead_lettered=0, lost=0,
                         doubled=sum(len(sent) > 1 for sent in mails),
                         recovery_seconds=round(time.monotonic() - started, 2)))
