"""Redis killed and restarted under load: AOF keeps the queue, late acks keep the jobs."""

import time

from tests.faults.harness import Processes, effects_done, new_keys, send_effects, settle
from tests.faults.servers import PrivateRedis
from tests.fixtures import wait_for


def test_a_redis_restart_with_jobs_queued_and_in_flight_loses_and_doubles_nothing(
        processes: Processes, private_redis: PrivateRedis, record_ledger):
    keys = new_keys(200)
    private_redis.start()
    processes.worker("through-restart", private_redis.url)
    send_effects(private_redis.url, keys, seconds=0.05)
    wait_for(lambda: effects_done(keys) >= 50, what="the first jobs to complete")

    private_redis.kill()  # SIGKILL, and its exit: acks and deliveries in flight hit a dead socket
    private_redis.start()  # replays the append-only file
    restarted_at = time.monotonic()

    record_ledger(settle("Redis SIGKILLed and restarted (AOF on)", keys, since=restarted_at,
                         broker_url=private_redis.url))
