"""What every benchmark shares: its own database and Redis db, the template's and the
plain Celery worker, process memory, percentiles and the results file."""

import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import celery
import django
import kombu
import psycopg
import redis
from django.core.management import call_command
from django.db import connection, connections

from bench import ROOT, plain
from bench.probes import BROKER_URL
from config.celery import app as template_app
from workers.core.outbox_marks import outbox_marks_flush
from workers.core.redis_urls import redis_from_url

RESULTS = ROOT / "bench" / "results"

TEMPLATE = "template"
PLAIN = "plain Celery"
UNACKED = "unacked"  # kombu's hash of delivered, unacknowledged messages on Redis


def broker() -> redis.Redis:
    """The benchmark's broker (through its Sentinels in bench.replication)."""
    return redis_from_url(BROKER_URL, master_name=os.environ.get("REDIS_SENTINEL_MASTER", ""))


@contextmanager
def bench_database() -> Iterator[None]:
    """A fresh, migrated database for the run; dropped afterwards."""
    admin_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    name = connection.settings_dict["NAME"]
    _recreate(admin_url, name)
    call_command("migrate", verbosity=0, interactive=False)
    try:
        yield
    finally:
        outbox_marks_flush()  # before the database goes, not at exit
        connections.close_all()
        _recreate(admin_url, name, create=False)


def _recreate(admin_url: str, name: str, *, create: bool = True) -> None:
    with psycopg.connect(admin_url, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            db.execute(f'CREATE DATABASE "{name}"')


def start_worker(*, kind: str, name: str, concurrency: int, queues: str | None = None,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """A worker as deployed (prefork, `-l info`); the plain one on Celery's defaults.

    Returns at once: scripts that time a drain watch the queue from the first message.
    """
    command = [sys.executable, "-m", "celery", "-A", "config" if kind == TEMPLATE
               else "bench.plain", "worker", "-n", f"{name}@%h", "-c", str(concurrency),
               "-l", "info"]
    if kind == TEMPLATE:
        command += ["-I", "bench.tasks"]
    if queues:
        command += ["-Q", queues]
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=os.environ | (env or {}),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(worker: subprocess.Popen, *, kind: str, name: str, timeout: float = 60) -> None:
    app = template_app if kind == TEMPLATE else plain.app
    deadline = time.monotonic() + timeout
    while not app.control.ping(destination=[f"{name}@{platform.node()}"], timeout=0.5):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench worker {name} did not start: see bench/results/logs/")


def stop_worker(worker: subprocess.Popen) -> None:
    """Warm shutdown, as a deploy does; killed if it has not gone within a minute."""
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


@contextmanager
def running(**worker_options) -> Iterator[subprocess.Popen]:
    worker = start_worker(**worker_options)
    try:
        yield worker
    finally:
        stop_worker(worker)


def fill(*, send: Callable[[], object], queue: str, count: int) -> None:
    """Put `count` task messages on `queue` at Redis speed.

    One message is sent through Celery; the rest are copies of it, each with a task id and
    delivery tag of its own (everything a worker or an effect-once key tells apart).
    Publishing them one by one would take longer than the drains being measured.
    """
    client = broker()
    send()
    raw = client.rpop(queue).decode()
    message = json.loads(raw)
    task_id, tag = message["headers"]["id"], message["properties"]["delivery_tag"]
    with client.pipeline(transaction=False) as pipe:
        for done in range(1, count + 1):
            pipe.lpush(queue, raw.replace(task_id, str(uuid.uuid4()))
                       .replace(tag, str(uuid.uuid4())))
            if done % 5000 == 0:
                pipe.execute()
        pipe.execute()


def wait_drained(*, queue: str, timeout: float = 900,
                 on_left: Callable[[int], None] | None = None) -> tuple[int, float]:
    """Watch a pre-filled queue empty: (messages taken, seconds from first take to last ack).

    Polling the list and kombu's unacked hash costs the worker nothing, unlike a counter
    written by every task.
    """
    client = broker()
    total = client.llen(queue)
    started = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = client.llen(queue)
        in_flight = client.hlen(UNACKED)
        now = time.monotonic()
        if started is None and left < total:
            started, taken_before = now, total - left - in_flight
        if on_left is not None:
            on_left(left)
        if started is not None and left == 0 and in_flight == 0:
            return total - taken_before, now - started
        time.sleep(0.02)
    raise SystemExit(f"queue {queue} did not drain within {timeout:.0f}s")


def wait_empty(*, queues: list[str], on_left: Callable[[dict[str, int]], None],
               timeout: float = 1800) -> None:
    """Watch pre-filled queues until all are empty and nothing is left unacknowledged,
    telling `on_left` what each still holds."""
    client = broker()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {queue: client.llen(queue) for queue in queues}
        on_left(left)
        if not any(left.values()) and not client.hlen(UNACKED):
            return
        time.sleep(0.02)
    raise SystemExit(f"queues {', '.join(queues)} did not drain within {timeout:.0f}s")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (its reaped children not
    included): a cost that a busy machine slows down but does not inflate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pool_children(pid: int) -> list[int]:
    """The worker's pool processes (prefork children of its main process)."""
    return [int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def figure(*, benchmark: str, name: str, template: float, baseline: float | None, unit: str,
           target: str = "", met: bool | None = None, baseline_label: str = PLAIN,
           lower_bounds: tuple[str, ...] = (), ratio: bool = True) -> dict:
    """One row of the table. `lower_bounds` names the sides ("template", "baseline") whose
    value is only a lower bound (a measurement cut off before it finished); `ratio=False`
    where dividing the two means nothing (growth in percent, counts)."""
    ratio = float(f"{template / baseline:.3g}") if ratio and baseline else None
    return {"benchmark": benchmark, "figure": name, "template": template,
            "baseline": baseline, "baseline_label": baseline_label, "unit": unit,
            "ratio": ratio, "target": target, "met": met, "lower_bounds": list(lower_bounds)}


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().split()
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_server": broker().info("server")["redis_version"],
        "django": django.get_version(),
    }


def save(name: str, figures: list[dict], **details) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"machine": machine(), "figures": figures, "details": details}, indent=2))
    print_table(figures)


def print_table(figures: list[dict]) -> None:
    """Values marked ">=" are lower bounds; a ratio "1/n" is a template n times smaller."""
    print(f"{'benchmark':11} {'figure [unit]':58} {'template':>9} {'baseline':>9} "
          f"{'ratio':>8}  target")
    for row in figures:
        bounds = row.get("lower_bounds", ())
        template = _number(row["template"], lower_bound="template" in bounds)
        baseline = ("" if row["baseline"] is None
                    else _number(row["baseline"], lower_bound="baseline" in bounds))
        verdict = {True: " (met)", False: " (MISSED)", None: ""}[row["met"]]
        print(f"{row['benchmark']:11} {row['figure'] + ' [' + row['unit'] + ']':58} "
              f"{template:>9} {baseline:>9} {_ratio(row['ratio']):>8}  "
              f"{row['target']}{verdict}")


def _number(value: float, *, lower_bound: bool = False) -> str:
    text = (f"{value:,}" if isinstance(value, int)
            else f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}")
    return f">={text}" if lower_bound else text


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"1/{1 / ratio:,.0f}" if 0 < ratio < 0.01 else f"{ratio:.3g}"
