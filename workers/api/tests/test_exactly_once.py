"""Outbox, effect-once keys and enqueue-time dedup, through their public entry points."""

import threading
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.billing.models import Invoice
from apps.billing.tasks import charge_invoice
from tests.factories import invoice_for
from tests.fixtures import wait_for
from tests.ledger.models import Effect
from tests.tasks import FINISHED, record_effect
from workers.api.effects import effects_purge_expired
from workers.api.models import OutboxMessage, TaskEffect
from workers.api.outbox import outbox_enqueue, outbox_sweep
from workers.tasks import probe


@pytest.fixture
def unpublished(monkeypatch):
    """Keep the receipts these eager runs queue in the outbox: a worker running them would
    race the test database's teardown."""
    monkeypatch.setattr("workers.api.outbox.outbox_publish", lambda *, pending: 0)


def enqueue_effect(key: str) -> OutboxMessage:
    return outbox_enqueue(task_name=record_effect.name, kwargs={"key": key}, queue="critical",
                          task_id=key)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_no_job(test_redis):
    def failing_service():
        with transaction.atomic():
            enqueue_effect("rolled-back")
            raise RuntimeError("the service failed after enqueueing")

    with pytest.raises(RuntimeError):
        failing_service()

    assert not OutboxMessage.objects.exists()


def test_a_committed_job_is_published_after_commit_and_runs(live_workers):
    with transaction.atomic():
        rows = [enqueue_effect(f"outbox-{n}") for n in range(3)]

    wait_for(lambda: Effect.objects.filter(key__startswith="outbox-").count() == 3,
             what="the three jobs")
    published = OutboxMessage.objects.filter(pk__in=[row.pk for row in rows])
    assert all(row.published_at for row in published)


def test_publishing_a_row_twice_runs_its_effects_once(live_workers, test_redis):
    with transaction.atomic():
        row = enqueue_effect("published-twice")
    wait_for(lambda: test_redis.hget(FINISHED, row.task_id), what="the first run")
    OutboxMessage.objects.filter(pk=row.pk).update(published_at=None)  # as if never marked

    assert outbox_sweep(now=timezone.now() + timedelta(minutes=1)) == 1
    wait_for(lambda: test_redis.hget(FINISHED, row.task_id) == "2", what="the second delivery")
    assert Effect.objects.filter(key="published-twice").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_skips_rows_another_publisher_holds(test_redis):
    with transaction.atomic():
        enqueue_effect("held")
    OutboxMessage.objects.update(published_at=None)
    holding, release = threading.Event(), threading.Event()

    def other_publisher():
        with transaction.atomic():
            list(OutboxMessage.objects.select_for_update())
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=other_publisher)
    thread.start()
    holding.wait(10)
    later = timezone.now() + timedelta(minutes=1)
    try:
        assert outbox_sweep(now=later) == 0  # skipped, not waited for
    finally:
        release.set()
        thread.join()
    assert outbox_sweep(now=later) == 1


def test_only_effect_once_or_idempotent_tasks_may_use_the_outbox():
    with pytest.raises(TypeError, match="neither effect_once nor idempotent"):
        probe.delay_via_outbox(0.0)


@pytest.mark.django_db(transaction=True)
def test_an_effect_once_task_repeated_with_its_id_has_its_effects_once():
    for _ in range(3):
        record_effect.apply(args=["repeated"], task_id="same-id")
    record_effect.apply(args=["repeated"], task_id="another-id")  # a replay runs again

    assert Effect.objects.filter(key="repeated").count() == 2
    assert TaskEffect.objects.filter(key__in=["task:same-id", "task:another-id"]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_failed_run_records_no_key_so_the_retry_runs(stripe_api, unpublished):

    invoice = invoice_for("flaky@example.com", customer_id="cus_flaky")

    # Eager: the 500 from the gateway is retried inline under the same task id. Had the
    # failed attempt kept its key, the retry would have been skipped as a repeat.
    charge_invoice.apply(args=[invoice.pk], task_id="charge-1")

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert len(stripe_api.requests) == 2
    assert TaskEffect.objects.filter(key="task:charge-1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_declared_key_makes_a_second_job_for_the_same_object_a_no_op(unpublished):
    from apps.billing.tasks import mark_invoice_paid

    invoice = invoice_for("declared@example.com")
    mark_invoice_paid.apply(args=[invoice.pk, "pi_1"], task_id="first")
    mark_invoice_paid.apply(args=[invoice.pk, "pi_2"], task_id="second")

    invoice.refresh_from_db()
    assert invoice.payment_reference == "pi_1"
    assert TaskEffect.objects.get(key=f"invoice-paid:{invoice.pk}").task_id == "first"


@pytest.mark.django_db
def test_expired_keys_are_purged_and_live_ones_kept():
    now = timezone.now()
    TaskEffect.objects.create(key="old", task_name="t", task_id="1", expires_at=now)
    TaskEffect.objects.create(key="live", task_name="t", task_id="2",
                              expires_at=now + timedelta(days=1))

    assert effects_purge_expired(now=now + timedelta(seconds=1)) == 1
    assert list(TaskEffect.objects.values_list("key", flat=True)) == ["live"]


def test_a_dedup_key_sends_one_job_while_it_waits_or_runs(live_workers, test_redis):
    first = record_effect.apply_async(["dedup", 1.0], queue="bulk", dedup_key="dedup:1")
    second = record_effect.apply_async(["dedup", 1.0], queue="bulk", dedup_key="dedup:1")

    assert second.id == first.id
    wait_for(lambda: test_redis.hget(FINISHED, first.id), what="the deduplicated job")
    third = record_effect.apply_async(["dedup", 0.0], queue="bulk", dedup_key="dedup:1")
    assert third.id != first.id  # released when the job ended
    wait_for(lambda: Effect.objects.filter(key="dedup").count() == 2, what="the third job")

