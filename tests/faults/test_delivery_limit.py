"""RabbitMQ's delivery limit: a message lost more often than TASK_MAX_DELIVERIES before any
task could record a failure is dead-lettered by the broker, and becomes one row."""

import time

import pytest
from django.conf import settings
from kombu import Connection

from tests.faults.brokers import broker_queue
from tests.faults.harness import Processes, new_keys, send_effects, settle
from tests.fixtures import HANG, wait_for
from workers.dead_letters.models import DeadLetter


def lose_every_delivery(broker_url: str, *, times: int) -> list[object]:
    """Take the critical queue's message `times` times and hand it back unprocessed each
    time, as a worker dying before the task starts would; return each delivery's
    `x-delivery-count`."""
    counts: list[object] = []

    def hand_back(message) -> None:
        counts.append(message.headers.get("x-delivery-count"))
        message.requeue()

    with Connection(broker_url) as connection, connection.Consumer(
            [broker_queue(broker_url, "critical")], on_message=hand_back, prefetch_count=1):
        while len(counts) < times:
            connection.drain_events(timeout=HANG)
    return counts


@pytest.mark.parametrize("fault_broker", ["rabbitmq"], indirect=True)
def test_a_message_lost_past_the_delivery_limit_becomes_one_replayable_dead_letter(
        processes: Processes, fault_broker, record_ledger):
    keys = new_keys(1)
    # Any pool's worker declares and consumes the dead-letter queue; this one leaves the
    # critical queue to the test.
    processes.worker("dead-letters", fault_broker, queue="bulk")
    wait_for(lambda: "ready." in processes.log("dead-letters"), what="the worker to start")
    send_effects(fault_broker, keys, seconds=0)

    counts = lose_every_delivery(fault_broker, times=settings.TASK_MAX_DELIVERIES + 1)

    assert counts == [None, *range(1, settings.TASK_MAX_DELIVERIES + 1)]
    dead_lettered_at = time.monotonic()
    # The new dead letter raises an alert, whose delivery is a critical job.
    processes.worker("critical", fault_broker)
    ledger = record_ledger(settle("RabbitMQ delivery limit (task never ran)", keys,
                                  since=dead_lettered_at, broker_url=fault_broker))

    assert ledger.dead_lettered == 1
    row = DeadLetter.objects.get(task_id=keys[0])
    assert (row.task_name, row.queue, row.args) == ("tests.tasks.record_effect", "critical",
                                                    [keys[0], 0])
    assert row.exception_type == "workers.core.exceptions.RedeliveryLimitExceeded"
    assert "delivery_limit" in row.message
    assert not row.raw_body  # its call is kept: an operator can requeue it
