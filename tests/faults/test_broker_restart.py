"""The broker killed and restarted under load: Redis's AOF or RabbitMQ's quorum-queue log
keeps the queue, late acks keep the jobs."""

import time

from tests.faults.brokers import is_rabbitmq
from tests.faults.conftest import BOTH_PRIVATE_BROKERS
from tests.faults.harness import Processes, effects_done, new_keys, send_effects, settle
from tests.fixtures import wait_for


@BOTH_PRIVATE_BROKERS
def test_a_broker_restart_with_jobs_queued_and_in_flight_loses_and_doubles_nothing(
        processes: Processes, private_broker, record_ledger):
    keys = new_keys(200)
    private_broker.start()
    processes.worker("through-restart", private_broker.url)
    send_effects(private_broker.url, keys, seconds=0.05)
    wait_for(lambda: effects_done(keys) >= 50, what="the first jobs to complete")

    private_broker.kill()  # SIGKILL, and its exit: acks and deliveries in flight hit a dead socket
    private_broker.start()  # replays its log
    restarted_at = time.monotonic()

    fault = ("RabbitMQ node SIGKILLed and restarted" if is_rabbitmq(private_broker.url)
             else "Redis SIGKILLed and restarted (AOF on)")
    record_ledger(settle(fault, keys, since=restarted_at, broker_url=private_broker.url))
