"""Processes the fault tests start and kill, and the ledger they check afterwards."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from config.celery import app
from tests.faults.brokers import broker_env, broker_idle, broker_queue
from tests.faults.network import IsolatedHost
from tests.fixtures import HANG, ROOT, publisher_connection, wait_for
from tests.ledger.models import Effect
from tests.polling import poll_until
from workers.dead_letters.models import DeadLetter

# Redelivery within seconds: what production waits an hour for.
FAST_REDELIVERY = {"BROKER_VISIBILITY_TIMEOUT": "3", "BROKER_RESTORE_INTERVAL": "1"}


#: A service process writing ledger jobs through the outbox (`--per-transaction N`).
ENQUEUE = ["-m", "tests.faults.enqueue_through_outbox"]
SWEEP = ["manage.py", "outbox", "sweep"]


def new_keys(count: int) -> list[str]:
    """Task ids that double as ledger keys."""
    return [str(uuid.uuid4()) for _ in range(count)]


def send_effects(broker_url: str, keys: list[str], *, seconds: float) -> None:
    """Publish one ledger job per key (the key is its task id) to the broker at `broker_url`."""
    critical = broker_queue(broker_url, "critical")
    with publisher_connection(broker_url) as connection, \
            app.amqp.Producer(connection) as producer:
        for key in keys:
            app.send_task("tests.tasks.record_effect", args=[key, seconds], task_id=key,
                          queue=critical, producer=producer)


class Processes:
    """Child processes on the migrated test database; every one is killed at the end."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = env
        self.logs = logs
        self.started: list[subprocess.Popen] = []

    def worker(self, name: str, broker_url: str, *, concurrency: int = 4,
               queue: str = "critical", on: IsolatedHost | None = None,
               **env: str) -> subprocess.Popen:
        """A worker on this machine, or on the isolated host `on` (every service reached
        through its link)."""
        environment = {**broker_env(broker_url), **FAST_REDELIVERY, **env}
        if on is not None:  # every service URL it is given, the database's and the SMTP's too
            environment |= {key: on.url(value) for key, value in
                            (self.env | environment).items() if "://" in value}
        return self.spawn(
            name, ["-m", "celery", "-A", "config", "worker", "-Q", queue, "-n",
                   f"{name}@faults", "-c", str(concurrency), "-P", "prefork", "-l", "info",
                   "-I", "tests.tasks", "--without-heartbeat", "--without-mingle",
                   "--without-gossip"],
            within=on.inside() if on else [], **environment)

    def spawn(self, name: str, args: list[str], *, within: list[str] | None = None,
              **env: str) -> subprocess.Popen:
        """`python args` as `name`, its output in the test's logs; `within` prefixes the
        command (IsolatedHost.inside())."""
        log = (self.logs / f"{name}.log").open("a")
        process = subprocess.Popen([*(within or []), sys.executable, *args], cwd=ROOT,
                                   env=self.env | env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.started.append(process)
        return process

    def run(self, args: list[str], *, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=ROOT, env=self.env | env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    @staticmethod
    def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Signal the process and all its pool children, as a crashed host or OOM would."""
        os.killpg(process.pid, sig)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def log(self, name: str) -> str:
        """Everything the process started as `name` has written so far."""
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "".join(f"--- {path.name} ---\n" + "\n".join(path.read_text().splitlines()[-lines:])
                       + "\n" for path in sorted(self.logs.glob("*.log")))


@dataclass
class Ledger:
    fault: str
    sent: int
    completed: int
    dead_lettered: int
    lost: int
    doubled: int
    recovery_seconds: float

    @classmethod
    def of(cls, fault: str, keys: list[str], *, recovery_seconds: float) -> "Ledger":
        runs = Counter(Effect.objects.filter(key__in=keys).values_list("key", flat=True))
        dead = set(DeadLetter.objects.filter(task_id__in=keys).values_list("task_id", flat=True))
        return cls(fault=fault, sent=len(keys), completed=sum(1 for k in keys if runs[k]),
                   dead_lettered=len(dead - set(runs)),
                   lost=sum(1 for k in keys if not runs[k] and k not in dead),
                   doubled=sum(1 for k in keys if runs[k] > 1),
                   recovery_seconds=round(recovery_seconds, 2))



def settle(fault: str, keys: list[str], *, since: float, broker_url: str,
           timeout: float = HANG) -> Ledger:
    """The ledger once every key completed or was dead-lettered, timed from `since`.

    Counted again once the broker holds nothing for them any more (no message waiting,
    none delivered and unacknowledged), so a late second run, such as a redelivery
    after the visibility timeout, has happened and shows up as doubled.
    """
    poll_until(lambda: Ledger.of(fault, keys, recovery_seconds=0).lost == 0,
               timeout=timeout, interval=0.1)
    recovered = time.monotonic() - since
    wait_for(lambda: broker_idle(broker_url), timeout=timeout,
             what=f"the broker at {broker_url} to hold no message")
    return Ledger.of(fault, keys, recovery_seconds=recovered)


def effects_done(keys: list[str]) -> int:
    return Effect.objects.filter(key__in=keys).count()


def sweep_until_all_published(processes: Processes, url: str, **env: str) -> None:
    """Run the sweeper until no row is left unpublished (each run as beat would run it)."""
    def swept() -> bool:
        sweep = processes.run(SWEEP, **broker_env(url), OUTBOX_SWEEP_GRACE="0", **env)
        return "still unpublished 0" in sweep.stdout
    wait_for(swept, what="the sweeper to publish every row left unpublished")
