"""The two brokers the fault tests run on, read through their own tools, not through Celery.

A broker is named by its URL. Redis is read with its commands (kombu's lists and its
unacked hash); RabbitMQ with `rabbitmqctl`, which counts what AMQP does not show a client
(messages delivered and not yet acknowledged), asking each quorum queue's leader. Workers
on RabbitMQ keep their locks and counters in the fault tests' own Redis database.
"""

import os
import re
import subprocess
from urllib.parse import unquote, urlparse

import redis
from django.conf import settings
from kombu import Queue

from tests.faults.servers import RABBITMQ_NODES, PrivateRedisGroup
from workers.core.redis_urls import is_sentinel_url, redis_from_url
from workers.core.routing import declared_queues

#: The fault workers' own Redis database (the broker, or beside RabbitMQ the platform's),
#: and a vhost of the local RabbitMQ that only they use (the environment may name others,
#: so that two runs can share the servers).
FAULT_REDIS_DB = int(os.environ.get("TEST_FAULT_REDIS_DB", "12"))
FAULT_REDIS = f"redis://127.0.0.1:6379/{FAULT_REDIS_DB}"
FAULT_VHOST = os.environ.get("TEST_FAULT_VHOST", "template-faults")


def is_rabbitmq(url: str) -> bool:
    return url.startswith("amqp://")


def broker_name(url: str) -> str:
    """For ledgers: which broker a fault ran on."""
    return ("RabbitMQ" if is_rabbitmq(url) else
            "Redis with Sentinels" if is_sentinel_url(url) else "Redis")


def broker_env(url: str) -> dict[str, str]:
    """Environment for a process on the broker at `url`."""
    if is_sentinel_url(url):
        return {"CELERY_BROKER_URL": url, "REDIS_SENTINEL_MASTER": PrivateRedisGroup.MASTER}
    return {"CELERY_BROKER_URL": url, **({"REDIS_URL": FAULT_REDIS} if is_rabbitmq(url) else {})}


def broker_queue(url: str, name: str) -> Queue:
    """The queue as the workers on that broker declare it (a quorum queue on RabbitMQ)."""
    queues = declared_queues(rabbitmq=is_rabbitmq(url),
                             delivery_limit=settings.TASK_MAX_DELIVERIES)
    return next(queue for queue in queues if queue.name == name)


def rabbitmqctl(url: str, *args: str, check: bool = True) -> str:
    """Run `rabbitmqctl` against the node serving `url` (with a cluster's list of nodes,
    the first that answers)."""
    for each in url.split(";"):
        node = RABBITMQ_NODES[urlparse(each).port or 5672]
        result = subprocess.run(["rabbitmqctl", "-q", "-n", node, *args], capture_output=True,
                                text=True, timeout=60, check=False)
        if not result.returncode:
            break
    if check and result.returncode:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def vhost_of(url: str) -> str:
    return unquote(urlparse(url.split(";", 1)[0]).path[1:]) or "/"


def reset_vhost(url: str) -> None:
    """An empty vhost: no queue, no message, no binding left by an earlier test."""
    vhost = vhost_of(url)
    rabbitmqctl(url, "delete_vhost", vhost, check=False)
    rabbitmqctl(url, "add_vhost", vhost)
    rabbitmqctl(url, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")


#: Asked of the queue's Raft leader: a quorum queue's counts in `list_queues` (and the
#: management API) are statistics emitted every few seconds, and read (0, 0) for up to 5 s
#: after the queue is declared, whatever it holds. `total` counts a message the queue holds
#: back for at-least-once dead-lettering too.
QUORUM_COUNTS = """
case rabbit_amqqueue:lookup(rabbit_misc:r(<<"{vhost}">>, queue, <<"{queue}">>)) of
    {{error, not_found}} -> absent;
    {{ok, Q}} ->
        Leader = amqqueue:get_pid(Q),
        {{ok, {{_, Total}}, _}} = ra:local_query(Leader, fun rabbit_fifo:query_messages_total/1),
        {{ok, {{_, Out}}, _}} = ra:local_query(Leader,
                                            fun rabbit_fifo:query_messages_checked_out/1),
        {{Total, Out}}
end.
"""


def message_counts(url: str, *, queue: str = "critical") -> tuple[int, int] | None:
    """Messages waiting and messages delivered but unacknowledged; None if unreachable."""
    if is_rabbitmq(url):
        try:
            answer = rabbitmqctl(url, "eval", QUORUM_COUNTS.format(vhost=vhost_of(url),
                                                                   queue=queue)).strip()
        except (RuntimeError, subprocess.TimeoutExpired):
            return None
        if answer == "absent":  # not declared yet
            return 0, 0
        if not (counts := re.fullmatch(r"\{(\d+),(\d+)\}", answer)):
            raise RuntimeError(f"a quorum queue's leader answered {answer!r}")
        total, unacked = map(int, counts.groups())
        return total - unacked, unacked
    try:
        client = redis_from_url(url, master_name=PrivateRedisGroup.MASTER)
        pipe = client.pipeline()
        for key in (queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))):
            pipe.llen(key)
        pipe.hlen("unacked")
        *lengths, unacked = pipe.execute()
    except (redis.ConnectionError, redis.ReadOnlyError):  # a failover under way
        return None
    return sum(lengths), unacked


def broker_idle(url: str, *, queue: str = "critical") -> bool:
    """No message waits in the queue and none is delivered but unacked."""
    return message_counts(url, queue=queue) == (0, 0)
