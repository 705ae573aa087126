"""A worker host cut off from the broker by the network while it runs tasks (its link to
the broker's port dropped, both ways, no reset), on both brokers.

Its work is handed to a worker elsewhere within the documented bound (Redis: the
visibility timeout; RabbitMQ: about two missed heartbeats), its own tasks still finish
(the database stays reachable), its late acks do no harm, every effect happens once, and
once the link is back it takes work again by itself."""

import time
from collections.abc import Iterator

import pytest
import redis

from tests.faults.brokers import FAULT_REDIS, broker_name, is_rabbitmq
from tests.faults.conftest import BOTH_BROKERS
from tests.faults.harness import Processes, effects_done, new_keys, send_effects, settle
from tests.faults.network import IsolatedHost
from tests.fixtures import wait_for
from tests.tasks import RAN_ON

pytestmark = pytest.mark.cluster  # a host of its own: `make test-cluster`
POSTGRES, REDIS, RABBITMQ = 5432, 6379, 5672
#: Seconds between AMQP heartbeats in this test (BROKER_HEARTBEAT): RabbitMQ gives up on
#: the cut-off worker's connection after about two missed ones.
HEARTBEAT = "2"


@pytest.fixture
def isolated_host() -> Iterator[IsolatedHost]:
    host = IsolatedHost(ports=(POSTGRES, REDIS, RABBITMQ))
    try:
        host.start()
        yield host
    finally:
        host.remove()


def ran_on(keys: list[str]) -> set[str]:
    """The workers that ran the jobs of `keys` (tests.tasks records every run)."""
    where = redis.Redis.from_url(FAULT_REDIS, decode_responses=True).hmget(RAN_ON, keys)
    return {entry.split("@")[0] for entry in where if entry}


@BOTH_BROKERS
def test_a_worker_cut_off_from_the_broker_hands_its_work_over_and_recovers_by_itself(
        processes: Processes, fault_broker, isolated_host: IsolatedHost, record_ledger):
    port = RABBITMQ if is_rabbitmq(fault_broker) else REDIS
    keys = new_keys(60)
    processes.worker("cut-off", fault_broker, concurrency=2, on=isolated_host,
                     BROKER_HEARTBEAT=HEARTBEAT)
    send_effects(fault_broker, keys, seconds=0.3)
    wait_for(lambda: effects_done(keys) >= 4, what="the isolated worker to run jobs")

    isolated_host.cut(port)  # mid-task: deliveries unacked, acks and fetches in flight
    cut_at = time.monotonic()
    other = processes.worker("elsewhere", fault_broker, concurrency=2,
                             BROKER_HEARTBEAT=HEARTBEAT)
    name = broker_name(fault_broker)
    record_ledger(settle(f"worker host cut off from {name}", keys, since=cut_at,
                         broker_url=fault_broker))
    assert "elsewhere" in ran_on(keys)

    isolated_host.heal(port)  # its late acks and fetches go through now
    processes.kill_group(other)
    other.wait(timeout=30)
    healed_at = time.monotonic()
    later = new_keys(20)
    send_effects(fault_broker, later, seconds=0)
    record_ledger(settle(f"cut-off worker back on {name}, alone", later, since=healed_at,
                         broker_url=fault_broker))
    assert ran_on(later) == {"cut-off"}
    assert effects_done(keys) == len(keys)  # the late acks brought nothing back to run
