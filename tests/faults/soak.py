"""`make soak`: a steady stream of jobs and emails through both pools while faults strike.

For `--minutes` (default 10), effect-once ledger jobs (on `critical` and `bulk`) and
transactional emails are enqueued through the outbox, while at random moments a worker's
process group is SIGKILLed, a worker is sent SIGTERM, the private Redis (AOF on) is
SIGKILLed and restarted, or the private PostgreSQL is restarted. Then the stream stops,
every process comes back, and the run waits until nothing is left in flight. It prints
the ledger and exits 1 if any job or email was lost or doubled.

What the database committed is what was sent: a job whose commit failed in an outage was
never promised. An email delivered twice with the same Message-ID (a worker killed after
the SMTP server accepted it, before the row was marked sent) is reported apart: the
receiving provider drops the copy by its Message-ID, so it is not counted as doubled.

`--setup` picks the servers (all the run's own):

- `one-host` (the default): one Redis with AOF, SIGKILLed and restarted;
- `sentinel`: a Redis primary, a replica and three Sentinels as the broker and the
  platform's Redis, `BROKER_MIN_REPLICAS=1`; the primary is SIGKILLed, the Sentinels fail
  over and the old primary comes back as the new one's replica;
- `rabbitmq-cluster`: three RabbitMQ nodes (a random one SIGKILLed and restarted) beside a
  Redis for the platform, and one more worker on a host of its own whose link to the
  cluster is cut for a while and healed.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from tests.faults.network import IsolatedHost
from tests.faults.servers import (
    PrivatePostgres,
    PrivateRabbitMQCluster,
    PrivateRedis,
    PrivateRedisGroup,
)
from tests.polling import poll_until

POOLS = ("critical", "bulk")
SETTLE_TIMEOUT = 900.0  # seconds for everything in flight to finish once faults stop
SETUPS = ("one-host", "sentinel", "rabbitmq-cluster")


class Servers:
    """The broker (and the platform's Redis) of a setup: started, faulted, removed."""

    def __init__(self, setup: str, directory: Path, database: PrivatePostgres):
        self.setup = setup
        self.directory = directory
        self.redis = PrivateRedis(directory / "redis")
        self.group = PrivateRedisGroup(directory / "group")
        self.cluster = PrivateRabbitMQCluster() if setup == "rabbitmq-cluster" else None
        self.host: IsolatedHost | None = None
        self.database = database
        self.env: dict[str, str] = {}

    def start(self) -> None:
        if self.setup == "sentinel":
            self.group.start()
            self.broker_url = self.group.url
            self.env = {"REDIS_SENTINEL_MASTER": self.group.MASTER, "BROKER_MIN_REPLICAS": "1"}
            return
        self.redis.directory.mkdir()
        self.redis.start()
        self.broker_url = self.redis.url
        if self.cluster is None:
            return
        self.cluster.start()
        self.broker_url = self.cluster.url
        self.env = {"REDIS_URL": self.redis.url, "BROKER_HEARTBEAT": "5"}

    def isolate(self, *ports: int) -> IsolatedHost | None:
        """With a cluster, a host of its own reaching the servers and `ports` (for one
        more worker, whose link to the cluster the faults cut)."""
        if self.cluster is None:
            return None
        self.host = IsolatedHost(ports=(self.database.port, self.redis.port, *ports,
                                        *(node.port for node in self.cluster.nodes)))
        self.host.start()
        return self.host

    def worker(self, processes, name: str, *, queue: str,
               on: IsolatedHost | None = None) -> subprocess.Popen:
        """A worker of two processes on these servers (and its platform Redis)."""
        return processes.worker(name, self.broker_url, concurrency=2, queue=queue, on=on,
                                **self.env)

    def strike(self, fault: str, chance: random.Random) -> None:
        if fault == "Redis SIGKILL":
            self.redis.kill()
            self.redis.start()
        elif fault == "Redis primary SIGKILL, failover":
            old = self.group.primary()
            old.kill()
            self.group.fail_over(from_node=old, timeout=300)
        elif fault == "RabbitMQ node SIGKILL":
            assert self.cluster is not None
            node = chance.choice(self.cluster.nodes)
            node.kill()
            time.sleep(chance.uniform(1, 10))  # down for a while, as a crashed node is
            node.start()
        else:  # worker host cut off
            assert self.cluster is not None
            assert self.host is not None
            ports = [node.port for node in self.cluster.nodes]
            for port in ports:
                self.host.cut(port)
            time.sleep(chance.uniform(5, 30))
            for port in ports:
                self.host.heal(port)

    def remove(self) -> None:
        if self.host is not None:
            self.host.remove()
        if self.cluster is not None:
            self.cluster.remove(logs_to=self.directory / "rabbitmq")
        self.group.kill()
        self.redis.kill()


def fault_kinds(setup: str) -> tuple[str, ...]:
    """The faults a setup's soak draws from, as the log names them."""
    return ("worker SIGKILL", "worker SIGTERM", "PostgreSQL restart",
            *{"one-host": ("Redis SIGKILL",),
              "sentinel": ("Redis primary SIGKILL, failover",),
              "rabbitmq-cluster": ("RabbitMQ node SIGKILL", "worker host cut off")}[setup])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="jobs per second")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--setup", choices=SETUPS, default="one-host")
    parser.add_argument("--only", nargs="+", default=None, metavar="FAULT",
                        help="inject only these faults (their names as the log prints them)")
    options = parser.parse_args()
    unknown = sorted(set(options.only or ()) - set(fault_kinds(options.setup)))
    if unknown:  # else the injector would find nothing to pick and die, leaving no faults
        parser.error(f"--only: no fault {', '.join(map(repr, unknown))} in setup "
                     f"{options.setup}; its faults: {', '.join(fault_kinds(options.setup))}")
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    chance = random.Random(seed)
    print(f"soak: {options.setup}, {options.minutes:g} min, {options.rate:g} jobs/s, "
          f"seed {seed}", flush=True)

    logs = Path(tempfile.mkdtemp(prefix="soak-"))
    database = PrivatePostgres()
    servers = Servers(options.setup, logs, database)
    try:
        database.start()
        servers.start()
        faults, ledger = soak(options, chance, logs, servers)
        if ledger["jobs"]["lost"]:
            report_lost(servers.broker_url, logs)
    finally:
        servers.remove()
        database.remove()
    print_ledger(f"{options.setup}, {options.minutes:g} min", faults, ledger)
    print(f"soak: logs in {logs}")
    failed = ledger["jobs"]["lost"] + ledger["jobs"]["doubled"] + \
        ledger["emails"]["lost"] + ledger["emails"]["doubled"]
    return 1 if failed else 0


def soak(options: argparse.Namespace, chance: random.Random, logs: Path,
         servers: Servers) -> tuple[Counter[str], dict[str, dict[str, int]]]:
    """The stream, the faults and the settling, on started servers; the faults injected
    and the ledger."""
    broker_url = servers.broker_url
    os.environ.update(DJANGO_SETTINGS_MODULE="tests.settings", DATABASE_URL=servers.database.url,
                      CELERY_BROKER_URL=broker_url, OUTBOX_SWEEP_INTERVAL="2",
                      OUTBOX_SWEEP_GRACE="1", OUTBOX_MARK_INTERVAL="0.25",
                      DEAD_LETTER_SPOOL_DRAIN_INTERVAL="2",
                      LOG_LEVEL="ERROR", **servers.env)  # this process's; outages expected
    import django

    django.setup()
    from django.core.management import call_command

    from tests.faults.harness import Processes
    from tests.smtp_server import start_smtp_server

    call_command("migrate", verbosity=0)
    smtp, mailbox = start_smtp_server()
    processes = Processes(os.environ | {"EMAIL_URL": f"smtp://127.0.0.1:{mailbox.port}",
                                        "PYTHONPATH": str(Path.cwd()), "LOG_LEVEL": "INFO"},
                          logs)
    workers = {pool: servers.worker(processes, f"{pool}-0", queue=pool) for pool in POOLS}
    isolated = servers.isolate(mailbox.port)
    if isolated is not None:  # stays up; its link is what fails
        servers.worker(processes, "critical-isolated", queue="critical", on=isolated)
    processes.spawn("beat", ["-m", "celery", "-A", "config", "beat", "-l", "info",
                             "--pidfile", str(logs / "beat.pid")])
    faults: Counter[str] = Counter()
    stop = threading.Event()
    injector = threading.Thread(
        target=inject_faults, args=(chance, stop, faults, workers, processes, servers,
                                    options.only), daemon=True)
    try:
        injector.start()
        stream(chance, until=time.monotonic() + options.minutes * 60, rate=options.rate)
        stop.set()
        injector.join()
        print(f"soak: stream stopped, faults {dict(faults)}; settling", flush=True)
        ledger = settle(mailbox, broker_url)
    finally:
        processes.stop_all()
        smtp.stop()
    return faults, ledger


def stream(chance: random.Random, *, until: float, rate: float) -> None:
    """Enqueue through the outbox until `until`; outages only delay the next enqueue."""
    from django.db import Error, close_old_connections, transaction
    from redis.exceptions import RedisError

    from apps.notifications.models import Kind
    from apps.notifications.services import notification_request
    from workers.core.outbox import outbox_enqueue

    count = 0
    while time.monotonic() < until:
        count += 1
        key = f"soak-{count}-{chance.randrange(1 << 30)}"
        try:
            if count % 5 == 0:
                notification_request(kind=Kind.WELCOME, recipient=f"{key}@example.com",
                                     subject="Welcome", body="Soak", idempotency_key=key)
            else:
                with transaction.atomic():
                    outbox_enqueue(task_name="tests.tasks.record_effect", kwargs={"key": key},
                                   queue=chance.choice(POOLS), task_id=key)
        except (Error, RedisError):
            close_old_connections()
            time.sleep(0.2)
        time.sleep(1 / rate)


def inject_faults(chance, stop, faults, workers, processes, servers: Servers,
                  only: list[str] | None) -> None:
    restarts = Counter()
    kinds = fault_kinds(servers.setup)
    while not stop.wait(chance.uniform(5, 15)):
        kind = chance.choice([kind for kind in kinds if not only or kind in only])
        faults[kind] += 1
        print(f"soak: {time.strftime('%H:%M:%S')} {kind}", flush=True)
        if kind.startswith("worker"):
            pool = chance.choice(POOLS)
            worker = workers[pool]
            if kind == "worker SIGKILL":
                processes.kill_group(worker)
            else:
                worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=300)
            except subprocess.TimeoutExpired:
                processes.kill_group(worker)
                worker.wait(timeout=30)
            restarts[pool] += 1
            workers[pool] = servers.worker(processes, f"{pool}-{restarts[pool]}", queue=pool)
        elif kind == "PostgreSQL restart":
            servers.database.stop()
            servers.database.start()
        else:
            servers.strike(kind, chance)


def settle(mailbox, broker_url: str) -> dict[str, dict[str, int]]:
    """Wait until every committed job and email is done or dead-lettered and nothing is
    left in flight; then count."""
    from tests.faults.brokers import broker_idle

    def nothing_in_flight() -> bool:
        ledger = count(mailbox)
        return (not ledger["jobs"]["lost"] and not ledger["emails"]["lost"]
                and ledger["pending"]["outbox"] == ledger["pending"]["spool"] == 0
                and all(broker_idle(broker_url, queue=pool) for pool in POOLS))

    poll_until(nothing_in_flight, timeout=SETTLE_TIMEOUT, interval=1)
    return count(mailbox)


def count(mailbox) -> dict[str, dict[str, int]]:
    from django.db import close_old_connections

    from apps.notifications.models import Notification
    from tests.ledger.models import Effect
    from workers.core.models import OutboxMessage
    from workers.dead_letters.models import DeadLetter
    from workers.dead_letters.spool import dead_letter_spool_size

    close_old_connections()
    jobs = list(OutboxMessage.objects.filter(task_name="tests.tasks.record_effect")
                .values_list("task_id", flat=True))
    runs = Counter(Effect.objects.values_list("key", flat=True))
    dead = set(DeadLetter.objects.values_list("task_id", flat=True))
    dead_args = {tuple(args) for args in DeadLetter.objects.filter(
        task_name="apps.notifications.tasks.send_notification").values_list("args", flat=True)}
    emails = list(Notification.objects.values_list("pk", "recipient"))
    delivered: dict[str, list] = {recipient: [] for _, recipient in emails}
    with mailbox.lock:
        for item in mailbox.delivered:
            delivered.setdefault(item.to, []).append(item)
    distinct = {recipient: len({item.message_id for item in items})
                for recipient, items in delivered.items()}
    return {
        "jobs": {"sent": len(jobs), "completed": sum(1 for key in jobs if runs[key]),
                 "dead-lettered": sum(1 for key in jobs if not runs[key] and key in dead),
                 "lost": sum(1 for key in jobs if not runs[key] and key not in dead),
                 "doubled": sum(1 for key in jobs if runs[key] > 1)},
        "emails": {"sent": len(emails),
                   "delivered": sum(1 for n in distinct.values() if n),
                   "dead-lettered": sum(1 for pk, recipient in emails
                                        if not distinct[recipient] and (pk,) in dead_args),
                   "lost": sum(1 for pk, recipient in emails
                               if not distinct[recipient] and (pk,) not in dead_args),
                   "doubled": sum(1 for n in distinct.values() if n > 1),
                   "same Message-ID again": sum(len(items) - distinct[recipient]
                                                for recipient, items in delivered.items())},
        "pending": {"outbox": OutboxMessage.objects.filter(published_at=None).count(),
                    "spool": dead_letter_spool_size()},
    }


def report_lost(broker_url: str, logs: Path) -> None:
    """Where each lost job still shows: the broker keys (on Redis) and the log lines that
    name it; what finding the cause of a loss starts from."""
    from tests.faults.brokers import is_rabbitmq
    from workers.core.redis_urls import redis_from_url

    client = None if is_rabbitmq(broker_url) else redis_from_url(
        broker_url, master_name=PrivateRedisGroup.MASTER)
    for task_id in lost_jobs():
        print(f"soak: lost {task_id}", flush=True)
        for key in client.scan_iter(count=1000) if client is not None else ():
            if task_id.encode() in key or any(task_id.encode() in value
                                              for value in _values(client, key)):
                print(f"  broker key {key!r}", flush=True)
        for log in sorted(logs.glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if task_id in line:
                    print(f"  {log.name}: {line[:300]}", flush=True)


def _values(client, key: bytes) -> list[bytes]:
    """Every member, field and value of a Redis key, whatever its type."""
    kind = client.type(key).decode()
    if kind == "hash":
        return [item for pair in client.hgetall(key).items() for item in pair]
    return list({"list": lambda: client.lrange(key, 0, -1),
                 "zset": lambda: client.zrange(key, 0, -1),
                 "set": lambda: client.smembers(key),
                 "string": lambda: [client.get(key) or b""]}.get(kind, list)())


def lost_jobs() -> list[str]:
    from tests.ledger.models import Effect
    from workers.core.models import OutboxMessage
    from workers.dead_letters.models import DeadLetter

    done = set(Effect.objects.values_list("key", flat=True))
    dead = set(DeadLetter.objects.values_list("task_id", flat=True))
    return [key for key in OutboxMessage.objects.filter(task_name="tests.tasks.record_effect")
            .values_list("task_id", flat=True) if key not in done and key not in dead]


def print_ledger(run: str, faults: Counter, ledger: dict) -> None:
    print(f"\nsoak ledger ({run}; faults injected: "
          + ", ".join(f"{kind} {n}" for kind, n in sorted(faults.items())) + ")")
    for what in ("jobs", "emails"):
        print(f"  {what:7} " + ", ".join(f"{name} {n}" for name, n in ledger[what].items()))
    print("  left    " + ", ".join(f"{name} {n}" for name, n in ledger["pending"].items()))


if __name__ == "__main__":
    sys.exit(main())
