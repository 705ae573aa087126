"""Workers killed or stopped with tasks in flight: every job completes once, none is lost."""

import signal
import time

from tests.faults.brokers import broker_name, is_rabbitmq, message_counts
from tests.faults.conftest import BOTH_BROKERS
from tests.faults.harness import (
    Processes,
    effects_done,
    new_keys,
    send_effects,
    settle,
)
from tests.fixtures import wait_for
from tests.ledger.models import Effect


@BOTH_BROKERS
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

    record_ledger(settle(f"SIGKILL worker process group ({broker_name(fault_broker)})", keys,
                         since=killed_at, broker_url=fault_broker))


STOP_GRACE_PERIOD = 120  # seconds: worker-critical's stop_grace_period in docker-compose.yml


@BOTH_BROKERS
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
    # Nothing is left delivered and unacknowledged (on Redis: waiting out the visibility
    # timeout): every job finished or is back in the queue. (A task still running when the
    # channel closed is handed back too; it finishes, and its effect-once key makes the
    # successor's run a no-op.) RabbitMQ returns a closed connection's deliveries itself,
    # a moment after the process exits; Redis must already hold them back in the queue.
    # Each read is one the wait retries: `rabbitmqctl` on a saturated machine may fail one
    # (message_counts answers None), which a read of its own after the wait did not survive.
    if is_rabbitmq(fault_broker):
        counts = wait_for(lambda: (read := message_counts(fault_broker)) and read[1] == 0
                          and read, what="RabbitMQ to return the stopped worker's deliveries")
    else:
        counts = wait_for(lambda: message_counts(fault_broker), what="Redis's message counts")
    waiting, unacked = counts
    done = Effect.objects.filter(key__in=keys).count()
    assert unacked == 0
    assert waiting + done >= len(keys)
    processes.worker("successor", fault_broker, concurrency=2)

    record_ledger(settle(f"SIGTERM worker mid-batch ({broker_name(fault_broker)})", keys,
                         since=stopped_at, broker_url=fault_broker))
