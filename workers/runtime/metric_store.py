"""Per-task figures from every worker process, summed in Redis for one scrape.

Under prefork a worker is many processes, and a fleet is many hosts; Prometheus'
multiprocess mode only sums the processes of one host, through files, and would need a
scrape target per host. Here every process adds its increments to a table in memory,
and a background thread flushes the table every METRICS_FLUSH_INTERVAL seconds in one
pipelined round trip (HINCRBY / HINCRBYFLOAT) into one Redis hash per host. Increments
add up across pool children, restarts and hosts with no coordination, and the web
process's `/metrics` (workers/ops/prometheus.py) reads the hashes. A task costs a few dict
updates, never a network call.

What a process had not flushed when it was killed (at most one interval) is lost, and a
Redis restart resets the counters, which Prometheus' `rate()` reads as a counter reset.
A host that stops flushing has its hash expire after METRICS_HOST_TTL, so pods replaced by
an autoscaler do not stay in the scrape for ever.

The same flush writes the per-minute history the admin draws (workers/runtime/task_history.py)
from the started, succeeded, failed and retried counts and the runtime histogram, and, on
RabbitMQ, the counts of messages this process sent into each queue (workers/core/arrivals.py).
"""

import atexit
import bisect
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError, ResponseError

from workers.core.arrivals import Arrivals, arrival_bucket, arrivals_write
from workers.core.platform_redis import redis_client, redis_text
from workers.runtime.task_history import COUNTERS, RUNTIME_BUCKETS, history_write, slot_of

logger = logging.getLogger(__name__)

Amount = int | float  # an int is a count (HINCRBY), a float a sum of seconds (HINCRBYFLOAT)
History = dict[tuple[str, str], dict[int, int]]  # (queue, task) -> {record slot: amount}

HOST_KEY = "workers:metrics:host:"
HOSTS_KEY = "workers:metrics:hosts"

TASK_LABELS = ("name", "queue_name")  # + hostname, which is the hash a field lives in
# Enqueue to start: the low end shows critical latency (milliseconds), the high end a
# backlog (minutes).
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                120.0, 300.0, 600.0, 1800.0, float("inf"))


@dataclass(frozen=True)
class Family:
    name: str  # as exposed; counters without their `_total`
    kind: str  # counter or histogram
    help: str
    labels: tuple[str, ...] = TASK_LABELS
    buckets: tuple[float, ...] = ()


# Names and labels as celery-exporter has them, so its dashboards and alert rules apply.
FAMILIES = {family.name: family for family in (
    Family("celery_task_received", "counter", "Tasks a worker received."),
    Family("celery_task_started", "counter", "Tasks a worker started."),
    Family("celery_task_succeeded", "counter", "Tasks that succeeded."),
    Family("celery_task_failed", "counter", "Tasks that failed for good (dead-lettered).",
           ("name", "queue_name", "exception")),
    Family("celery_task_retried", "counter", "Tasks that failed and will be retried."),
    Family("celery_task_rejected", "counter", "Messages a worker rejected."),
    Family("celery_task_revoked", "counter", "Tasks revoked or expired before running."),
    Family("celery_task_runtime", "histogram", "Seconds a task ran (success, retry or "
           "failure).", buckets=RUNTIME_BUCKETS),
    Family("celery_task_queue_wait_time", "histogram", "Seconds from enqueue (or from its "
           "ETA, for a countdown or retry) to start.", buckets=WAIT_BUCKETS),
)}


@functools.lru_cache(maxsize=4096)
def field(family: str, labels: tuple[str, ...], suffix: str = "") -> str:
    """The hash field of one series: family (+ _bucket/_sum/_count) and its label values
    (cached: a task records the same few series over and over)."""
    return json.dumps([family + suffix, *labels], separators=(",", ":"))


def parse_field(raw: str) -> tuple[str, list[str]]:
    name, *labels = json.loads(raw)
    return name, labels


class Recorder:
    """The in-memory table of one process, flushed by its own thread.

    A pool child is a fork: it drops the table it inherited (its parent flushes that) and
    starts its own thread on its first record.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], Amount] = {}
        self._history: History = {}
        self._arrivals: Arrivals = {}
        self._pid = 0
        self._enabled = False

    def count(self, family: str, hostname: str, labels: tuple[str, ...],
              amount: int = 1) -> None:
        counter = family.removeprefix("celery_task_")
        slot = slot_of(counter) if counter in COUNTERS else None
        self._add([(hostname, field(family, labels), amount)], labels, slot, amount)

    def observe(self, family: str, hostname: str, labels: tuple[str, ...],
                value: float) -> None:
        index = bisect.bisect_left(FAMILIES[family].buckets, value)
        slot = slot_of("runtime", index) if family == "celery_task_runtime" else None
        self._add([(hostname, field(family, (*labels, str(index)), "_bucket"), 1),
                   (hostname, field(family, labels, "_sum"), float(value)),
                   (hostname, field(family, labels, "_count"), 1)], labels, slot, 1)

    def arrive(self, queue: str, at: float) -> None:
        """Count one message entering `queue` at `at` (workers/core/arrivals.py)."""
        with self._lock:
            if self._this_process_records():
                key = (queue, arrival_bucket(at))
                self._arrivals[key] = self._arrivals.get(key, 0) + 1

    def flush(self) -> None:
        """Send the table in one round trip; with Redis out of reach keep it for the next
        try. A command Redis refuses is a bug, logged: the pipeline has applied the rest,
        so sending it again would count the rest twice."""
        with self._lock:
            pending, self._pending = self._pending, {}
            history, self._history = self._history, {}
            arrivals, self._arrivals = self._arrivals, {}
        if not pending and not arrivals:
            return
        try:
            _send(pending.items(), history, arrivals)
        except ResponseError:
            logger.exception("metrics refused by Redis (the rest of the flush was applied)")
        except RedisError as exc:
            logger.warning("metrics not flushed (kept for the next try): %s", exc)
            with self._lock:
                for key, amount in pending.items():
                    self._pending[key] = self._pending.get(key, 0) + amount
                for series, slots in history.items():
                    kept = self._history.setdefault(series, {})
                    for slot, amount in slots.items():
                        kept[slot] = kept.get(slot, 0) + amount
                for bucket, amount in arrivals.items():
                    self._arrivals[bucket] = self._arrivals.get(bucket, 0) + amount

    def _add(self, items: Iterable[tuple[str, str, Amount]], labels: tuple[str, ...],
             slot: int | None, history_amount: int) -> None:
        with self._lock:
            if not self._this_process_records():
                return
            for hostname, key, amount in items:
                self._pending[(hostname, key)] = self._pending.get((hostname, key), 0) + amount
            if slot is not None:  # labels: task name, queue
                slots = self._history.setdefault((labels[1], labels[0]), {})
                slots[slot] = slots.get(slot, 0) + history_amount

    def _this_process_records(self) -> bool:
        """Under the lock: in a new process (a fork), drop the inherited tables and start
        the flush thread; False if metrics are off. What a process that exits normally
        (a `manage.py` command, `celery call`) has not flushed is flushed at its exit."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._pending, self._history, self._arrivals = {}, {}, {}
            self._enabled = settings.METRICS_ENABLED
            if self._enabled:
                threading.Thread(target=self._run, name="metrics-flush", daemon=True).start()
                atexit.register(self.flush)
        return self._enabled

    def _run(self) -> None:
        while True:
            time.sleep(settings.METRICS_FLUSH_INTERVAL)
            self.flush()


def _send(items: Iterable[tuple[tuple[str, str], Amount]], history: History,
          arrivals: Arrivals) -> None:
    client = redis_client()
    pipe = client.pipeline(transaction=False)
    hosts = set()
    for (hostname, key), amount in items:
        hosts.add(hostname)
        # By type, not by value: a _sum of 0.0 added with HINCRBY to "0.25" is refused.
        if isinstance(amount, float):
            pipe.hincrbyfloat(HOST_KEY + hostname, key, amount)
        else:
            pipe.hincrby(HOST_KEY + hostname, key, amount)
    now = time.time()
    for hostname in hosts:
        pipe.expire(HOST_KEY + hostname, settings.METRICS_HOST_TTL)
        pipe.zadd(HOSTS_KEY, {hostname: now})
    history_write(pipe, history, now=now)
    arrivals_write(pipe, arrivals)
    pipe.execute()


recorder = Recorder()


# This worker's node name, set by its heartbeat step at start, for what the main process
# records with no request at hand (a rejected message).
_node = {"name": ""}


def set_node_name(name: str) -> None:
    _node["name"] = name


def node_name() -> str:
    return _node["name"]


def host_of(nodename: str | None) -> str:
    """`critical@web-1` -> `web-1`: the host part, as celery-exporter labels it."""
    return (nodename or "unknown").rpartition("@")[2]


def read_hosts() -> dict[str, dict[str, float]]:
    """Every live host's series (field: value), for the scrape; forgets expired hosts. A
    value that is not a number (written by something else) is left out, not the scrape."""
    client = redis_client()
    cutoff = time.time() - settings.METRICS_HOST_TTL
    client.zremrangebyscore(HOSTS_KEY, "-inf", cutoff)
    hosts = [redis_text(host) for host in client.zrange(HOSTS_KEY, 0, -1)]
    pipe = client.pipeline(transaction=False)
    for host in hosts:
        pipe.hgetall(HOST_KEY + host)
    read: dict[str, dict[str, float]] = {}
    for host, series in zip(hosts, pipe.execute(), strict=True):
        read[host] = {}
        for key, value in series.items():
            try:
                read[host][redis_text(key)] = float(value)
            except ValueError:
                logger.warning("metrics: %s of host %s is not a number", redis_text(key), host)
    return read
