"""A standard task (Django's `@task`) whose worker is SIGKILLed mid-run runs again on
another worker (acks late) and reports both attempts in `get_result`."""

import json

import redis

from tests.faults.brokers import FAULT_REDIS, broker_env, broker_name
from tests.faults.conftest import BOTH_BROKERS
from tests.faults.harness import Processes
from tests.fixtures import wait_for
from workers.core.task_results import KEY

ENQUEUE = "from tests.standard_tasks import held; print(held.enqueue({key!r}).id)"


@BOTH_BROKERS
def test_a_standard_task_killed_mid_run_runs_again_and_reports_both_attempts(
        processes: Processes, fault_broker):
    key = f"standard-crash-{broker_name(fault_broker)}"
    store = redis.Redis.from_url(FAULT_REDIS)  # the workers' platform Redis on both brokers
    first = processes.worker("standard-doomed", fault_broker, concurrency=1)
    sent = processes.run(["manage.py", "shell", "-c", ENQUEUE.format(key=key)],
                         **broker_env(fault_broker))
    assert sent.returncode == 0, sent.stderr
    result_id = sent.stdout.split()[-1]

    def record() -> dict:  # read from Redis as stored, as another process would
        return {name.decode(): json.loads(value)
                for name, value in store.hgetall(KEY.format(id=result_id)).items()}

    wait_for(lambda: record().get("status") == "RUNNING", what="the first attempt to start")
    processes.kill_group(first)  # main process and pool child, mid-run
    first.wait(timeout=10)
    store.set(f"test:release:{key}", 1)
    processes.worker("standard-successor", fault_broker, concurrency=1)

    wait_for(lambda: record().get("status") == "SUCCESSFUL", what="the second attempt")
    done = record()
    assert done["worker_ids"] == ["standard-doomed@faults", "standard-successor@faults"]
    assert done["return_value"] == key
