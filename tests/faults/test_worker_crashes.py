"""Workers killed or stopped with tasks in flight: every job completes once, none is lost."""

import json
import signal
import time

import redis

from tests.faults.harness import (
    Processes,
    effects_done,
    new_keys,
    send_effects,
    settle,
)
from tests.fixtures import wait_for
from tests.ledger.models import Effect


def test_sigkill_of_the_whole_worker_loses_and_doubles_nothing(processes: Processes,
                                                              fault_broker, record_ledger):
    keys = new_keys(200)
    first = processes.worker("doomed", fault_broker)
    send_effects(fault_broker, keys, seconds=0.05)
    wait_for(lambda: effects_done(keys) >= 40, what="the first jobs to complete")

    processes.kill_group(first)  # main process and pool children, mid-task
    first.wait(timeout=10)
    killed_at = time.monotonic()
    processes.worker("replacement", fault_broker)

    record_ledger(settle("SIGKILL worker process group", keys, since=killed_at,
                         broker_url=fault_broker))


STOP_GRACE_PERIOD = 120  # seconds: worker-critical's stop_grace_period in docker-compose.yml


def test_sigterm_finishes_running_tasks_and_returns_the_rest(processes: Processes,
                                                           fault_broker, record_ledger):
    keys = new_keys(40)
    first = processes.worker("stopping", fault_broker, concurrency=2)
    send_effects(fault_broker, keys, seconds=0.3)
    wait_for(lambda: effects_done(keys) >= 6, what="the first jobs to complete")

    first.send_signal(signal.SIGTERM)  # what `docker compose stop` sends
    stopped_at = time.monotonic()
    # Within worker-critical's stop_grace_period (docker-compose.yml). A task that finishes
    # after the consumer stopped keeps its pool process in billiard's wait for the parent
    # to read its result (up to 30 s; the parent no longer reads during pool.join).
    assert first.wait(timeout=STOP_GRACE_PERIOD) == 0
    # Nothing waits in the unacked set for the visibility timeout: every job finished or
    # is back in the queue. (A task still running when the channel closed is handed back
    # too; it finishes, and its effect-once key makes the successor's run a no-op.)
    broker = redis.Redis.from_url(fault_broker)
    assert broker.hlen("unacked") == 0
    queued = {json.loads(raw)["headers"]["id"] for raw in broker.lrange("critical", 0, -1)}
    done = set(Effect.objects.filter(key__in=keys).values_list("key", flat=True))
    assert queued | done == set(keys)
    processes.worker("successor", fault_broker, concurrency=2)

    record_ledger(settle("SIGTERM worker mid-batch", keys, since=stopped_at,
                         broker_url=fault_broker))
