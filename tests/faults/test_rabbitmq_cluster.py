"""A three-node RabbitMQ cluster under faults: the node leading the quorum queue killed
mid-stream, the same node partitioned away from the other two and healed, and a rolling
restart of every node, while a service enqueues through the outbox (publisher confirms)
and workers run the jobs. The workers and the service list
all three nodes in their broker URL, as docs/scaling.md says to."""

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.faults.brokers import FAULT_REDIS, broker_env, rabbitmqctl
from tests.faults.harness import (
    ENQUEUE,
    SWEEP,
    Processes,
    effects_done,
    new_keys,
    settle,
    sweep_until_all_published,
)
from tests.faults.servers import PrivateRabbitMQ, PrivateRabbitMQCluster
from tests.fixtures import wait_for
from tests.polling import poll_until

# Minutes of servers starting and failing over: `make test-cluster`, not `make test`; a
# node rejoining on a saturated machine can take minutes of its own.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]
REJOIN = 400.0  # seconds a healed or restarted node may take to rejoin with its members
#: Seconds a healed node that stays paused is given before it is restarted (it rejoined
#: within a minute in every run where it did at all).
UNPAUSE = 180.0


@pytest.fixture
def rabbitmq_cluster(tmp_path: Path) -> Iterator[PrivateRabbitMQCluster]:
    redis.Redis.from_url(FAULT_REDIS).flushdb()  # the workers' locks and counters
    cluster = PrivateRabbitMQCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove(logs_to=tmp_path / "rabbitmq")  # kept with the workers' logs


def quorum(cluster: PrivateRabbitMQCluster, queue: str = "critical") -> tuple[str, set[str]]:
    """The node leading `queue` and its members online; ("", set()) until it is declared."""
    table = rabbitmqctl(cluster.url, "list_queues", "-p", "/", "name", "leader", "online",
                        "--formatter", "json", check=False)
    for row in _rows(table):
        if row.get("name") == queue:
            return str(row.get("leader", "")), set(row.get("online") or [])
    return "", set()


def fully_replicated(cluster: PrivateRabbitMQCluster) -> bool:
    """Every node is running and holds an online member of the task queues."""
    names = {node.node for node in cluster.nodes}
    return cluster.running() == names and all(
        quorum(cluster, queue)[1] == names for queue in ("critical", "bulk"))


def leader_of(cluster: PrivateRabbitMQCluster) -> PrivateRabbitMQ:
    leader = wait_for(lambda: quorum(cluster)[0], what="the critical queue to have a leader")
    return cluster.node_named(str(leader))


def streaming(processes: Processes, cluster: PrivateRabbitMQCluster,
              keys: list[str]) -> subprocess.Popen:
    """A worker on the cluster and a service enqueueing `keys` through the outbox, five a
    transaction, once the first jobs have run; returns the service process (which may
    still be sending)."""
    processes.worker("on-the-cluster", cluster.url, concurrency=2)
    wait_for(lambda: fully_replicated(cluster),
             what="the task queues to have a member on every node")
    enqueue = processes.spawn("enqueue", [*ENQUEUE, "--per-transaction", "5", *keys],
                              **broker_env(cluster.url))
    wait_for(lambda: effects_done(keys) >= 40, what="the first jobs to complete")
    return enqueue


def test_sigkill_of_the_quorum_leader_s_node_mid_stream_loses_and_doubles_nothing(
        processes: Processes, rabbitmq_cluster: PrivateRabbitMQCluster, record_ledger):
    url = rabbitmq_cluster.url
    keys = new_keys(200)
    enqueue = streaming(processes, rabbitmq_cluster, keys)

    leader = leader_of(rabbitmq_cluster)
    leader.kill()  # SIGKILL to the node: its connections, deliveries and confirms in flight
    killed_at = time.monotonic()
    assert enqueue.wait(timeout=120) == 0
    sweep_until_all_published(processes, url)

    record_ledger(settle("RabbitMQ cluster: quorum leader's node SIGKILLed", keys,
                         since=killed_at, broker_url=url))
    assert quorum(rabbitmq_cluster)[0] not in {"", leader.node}  # a survivor took over


def test_the_quorum_leader_s_node_partitioned_away_and_healed_loses_and_doubles_nothing(
        processes: Processes, rabbitmq_cluster: PrivateRabbitMQCluster, record_ledger):
    """The node cannot see the other two but its clients can still reach it: with
    `pause_minority` it pauses and closes their connections, they move to the majority,
    which elects a new leader and goes on; healed, the node rejoins by itself, or, if it
    stays paused, once restarted as docs/scaling.md tells operators to."""
    url = rabbitmq_cluster.url
    keys = new_keys(200)
    enqueue = streaming(processes, rabbitmq_cluster, keys)

    away = leader_of(rabbitmq_cluster)
    rabbitmq_cluster.partition(away)
    cut_at = time.monotonic()
    wait_for(lambda: rabbitmq_cluster.running() == {node.node for node in rabbitmq_cluster.nodes
                                                    if node is not away},
             what=f"the majority to count {away.node} out")
    done = effects_done(keys)

    def majority_runs_jobs() -> bool:
        # Jobs whose publish the partition failed wait for the sweeper: run it, as beat would.
        processes.run(SWEEP, **broker_env(url), OUTBOX_SWEEP_GRACE="0")
        return effects_done(keys) >= min(len(keys), done + 20)
    wait_for(majority_runs_jobs, what="the majority to go on running jobs")
    rabbitmq_cluster.heal(away)
    fault = "RabbitMQ cluster: quorum leader's node partitioned away, healed"
    if not poll_until(lambda: fully_replicated(rabbitmq_cluster), timeout=UNPAUSE):
        # The Erlang VM's `global` name server can leave the healed node paused ("awaiting
        # recovery", after a "global hang workaround" in its log) for good: seen in one CI
        # run of several, 400 s after the heal. The recovery docs/scaling.md gives: restart
        # it, the whole node (the hung state is the VM's, which an app restart keeps).
        away.kill()
        away.start()
        fault += ", then restarted"
    wait_for(lambda: fully_replicated(rabbitmq_cluster), timeout=REJOIN,
             what=f"{away.node} to rejoin with its queue members")
    assert enqueue.wait(timeout=120) == 0
    sweep_until_all_published(processes, url)

    record_ledger(settle(fault, keys, since=cut_at, broker_url=url))


def test_a_rolling_restart_of_every_node_loses_and_doubles_nothing(
        processes: Processes, rabbitmq_cluster: PrivateRabbitMQCluster, record_ledger):
    url = rabbitmq_cluster.url
    slices = [new_keys(50) for _ in range(rabbitmq_cluster.SIZE + 1)]
    keys = [key for keys in slices for key in keys]
    processes.worker("through-restarts", url, concurrency=2)
    wait_for(lambda: fully_replicated(rabbitmq_cluster),
             what="the task queues to have a member on every node")
    started_at = time.monotonic()

    for node, batch in zip(rabbitmq_cluster.nodes, slices, strict=False):
        # RabbitMQ's own rule for a rolling restart: stop a node only while every quorum
        # queue keeps a majority without it.
        subprocess.run(["rabbitmq-upgrade", "-q", "-n", node.node,
                        "await_online_quorum_plus_one", "-t", "120"], check=True,
                       capture_output=True, timeout=180)
        enqueue = processes.spawn(f"enqueue-{node.port}", [
            *ENQUEUE, "--per-transaction", "5", *batch], **broker_env(url))
        node.stop()
        node.start()
        assert enqueue.wait(timeout=120) == 0
        wait_for(lambda: fully_replicated(rabbitmq_cluster), timeout=REJOIN,
                 what=f"{node.node} to rejoin with its queue members")
    assert processes.run([*ENQUEUE, *slices[-1]], **broker_env(url)).returncode == 0
    sweep_until_all_published(processes, url)

    record_ledger(settle("RabbitMQ cluster: rolling restart of all 3 nodes", keys,
                         since=started_at, broker_url=url))


def _rows(table: str) -> list[dict]:
    try:
        rows = json.loads(table or "[]")
    except ValueError:
        return []
    return rows if isinstance(rows, list) else []
