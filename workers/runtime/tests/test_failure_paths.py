"""Real workers, real Redis: routing, retries, and every path into the dead-letter table."""

import pytest
from celery.utils import uuid
from django.utils import timezone

from apps.analytics.tasks import rollup_last_hour
from apps.billing.models import PaymentEvent
from apps.billing.tasks import process_payment_event
from tests import tasks
from tests.fixtures import wait_for
from tests.waits import dead_letter, dead_letter_handed_off, ran_on, runs
from workers.core.routing import BULK, CRITICAL
from workers.dead_letters.models import DeadLetter


def test_project_tasks_reach_the_worker_of_their_queue(live_workers, test_redis):
    event = PaymentEvent.objects.create(event_id="evt_route", type="customer.created",
                                        created=timezone.now(),
                                        payload={"data": {"object": {}}})
    critical = process_payment_event.delay(event.pk)
    bulk = rollup_last_hour.delay()

    assert ran_on(test_redis, critical.id) == ("critical@test", CRITICAL)
    assert ran_on(test_redis, bulk.id) == ("bulk@test", BULK)
    event.refresh_from_db()
    assert event.outcome == PaymentEvent.Outcome.IGNORED


def test_transient_error_is_retried_then_succeeds(live_workers, test_redis):
    key = uuid()
    result = tasks.transient_until.apply_async(args=[key, 2], queue=BULK)

    ran_on(test_redis, result.id)
    wait_for(lambda: runs(test_redis, key) == 3, what="the third, successful run")
    assert not DeadLetter.objects.filter(task_id=result.id).exists()


def test_exhausted_retries_are_dead_lettered_with_the_attempt_count(live_workers, test_redis):
    key = uuid()
    result = tasks.transient_until.apply_async(args=[key, 99], queue=BULK)

    row = dead_letter_handed_off(test_redis, result.id)
    assert row.exception_type == "workers.core.exceptions.TransientError"
    assert row.attempts == 3  # the first run and max_retries=2 retries
    assert runs(test_redis, key) == 3
    assert (row.task_name, row.queue, row.args, row.status) == (
        "tests.tasks.transient_until", BULK, [key, 99], DeadLetter.Status.NEW)
    assert "flaky dependency" in row.traceback


@pytest.mark.parametrize(("task", "exception_type"), [
    (tasks.permanent, "workers.core.exceptions.PermanentError"),
    (tasks.undeclared, "builtins.ValueError"),
    (tasks.rejects, "celery.exceptions.Reject"),
])
def test_permanent_errors_bugs_and_rejected_messages_skip_retries(live_workers, test_redis, task,
                                                      exception_type):
    key = uuid()
    result = task.apply_async(args=[key], queue=CRITICAL)

    row = dead_letter_handed_off(test_redis, result.id)
    assert (row.exception_type, row.attempts, runs(test_redis, key)) == (exception_type, 1, 1)


def test_hard_time_limit_is_dead_lettered(live_workers, test_redis):
    key = uuid()
    result = tasks.overrun.apply_async(args=[key], queue=BULK)

    row = dead_letter(result.id)
    assert row.exception_type == "billiard.exceptions.TimeLimitExceeded"
    assert row.attempts == 1
    assert row.args == [key]
    assert row.queue == BULK
    assert DeadLetter.objects.filter(task_id=result.id).count() == 1
    assert runs(test_redis, key) == 1  # acked on timeout, not run again


def test_task_that_kills_its_worker_is_dead_lettered_after_the_delivery_cap(
        live_workers, test_redis, settings):
    key = uuid()
    result = tasks.kill_own_process.apply_async(args=[key], queue=CRITICAL)

    row = dead_letter(result.id)
    assert row.exception_type == "workers.core.exceptions.RedeliveryLimitExceeded"
    assert runs(test_redis, key) == settings.TASK_MAX_DELIVERIES
    assert row.args == [key]
    # the worker is still serving: its pool replaced the killed children
    follow_up = tasks.permanent.apply_async(args=[uuid()], queue=CRITICAL)
    dead_letter(follow_up.id)


def test_a_secret_argument_quoted_bare_in_the_error_stays_out_of_the_dead_letter(
        live_workers, test_redis):
    result = tasks.quotes_its_password.apply_async(args=["ann", "Plain-Pw-3141"],
                                                   queue=CRITICAL)
    row = dead_letter_handed_off(test_redis, result.id)
    assert row.message == "auth refused for ann using [redacted]"
    assert "Plain-Pw-3141" not in row.traceback
    assert row.args == ["ann", "Plain-Pw-3141"]  # exact, for the replay; shown redacted
