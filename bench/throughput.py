"""Throughput: no-op tasks drained per second per pool size, and jobs enqueued per second
by a service, through the template against plain Celery.

    python -m bench.throughput [--tasks 20000] [--memory-tasks 100000] [--pools 2 4]
                               [--enqueue 2000]

Drain: the queue is filled first, then one worker starts; the rate runs from the first
message taken to the last one acknowledged, read by polling Redis, so tasks write nothing.
The template's no-op runs on the project's base task and settings: late acks, time limits,
child recycling, the dead-letter, dedup and replay hooks, a log line per task received
and done, and task events (what Flower's task views and Prometheus metrics are built
from). Its effect-once variant adds a database transaction per task. The plain no-op
runs on bench/plain.py.

Fetch: the template's worker on its atomic-fetch Redis transport against the same worker
on kombu's stock one (BROKER_TRANSPORT=redis), in alternating rounds, median of each.

Enqueue: one process, one service call per job: plain `apply_async`; the template's
`delay_on_commit` in a transaction (routing and publish hooks, the publish after commit);
and `delay_via_outbox` in a transaction (row insert, publish after commit, row marked).
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable

from django.db import transaction

from bench import harness, plain, tasks
from bench.harness import PLAIN, TEMPLATE, figure
from workers.api.models import TaskEffect

TARGET = ">= 0.90 of plain"
WARMUP = 1000  # tasks drained before the first memory sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--memory-tasks", type=int, default=100_000,
                        help="drained by the deployed pool size (one process per core)")
    parser.add_argument("--pools", type=int, nargs="+",
                        default=[os.cpu_count() or 1, 2 * (os.cpu_count() or 1)])
    parser.add_argument("--enqueue", type=int, default=2_000)
    parser.add_argument("--fetch-rounds", type=int, default=3)
    args = parser.parse_args()
    with harness.bench_database():
        figures = [*drain_figures(tasks_count=args.tasks, memory_tasks=args.memory_tasks,
                                  pools=args.pools),
                   fetch_figure(count=args.tasks, rounds=args.fetch_rounds),
                   *enqueue_figures(count=args.enqueue)]
    harness.save("throughput", figures, tasks=args.tasks, memory_tasks=args.memory_tasks,
                 pools=args.pools, enqueued=args.enqueue, warmup=WARMUP)


def drain_figures(*, tasks_count: int, memory_tasks: int, pools: list[int]) -> list[dict]:
    """Per pool size; the deployed size (one process per core) drains `memory_tasks` and
    also gives the memory figures."""
    figures = []
    deployed = os.cpu_count() or 1
    for pool in pools:
        count = memory_tasks if pool == deployed else tasks_count
        baseline = drain(kind=PLAIN, send=plain.noop.apply_async, queue="celery",
                         count=count, pool=pool)
        template = drain(kind=TEMPLATE, send=tasks.noop.apply_async, queue="bulk",
                         count=count, pool=pool)
        figures.append(figure(
            benchmark="throughput", name=f"drain {count:,} no-ops, pool of {pool}",
            unit="tasks/s", template=template["rate"], baseline=baseline["rate"],
            target=TARGET, met=template["rate"] >= 0.9 * baseline["rate"]))
        if pool == deployed:
            figures += memory_figures(template=template, baseline=baseline, count=count)
    TaskEffect.objects.all().delete()
    effect_once = drain(kind=TEMPLATE, send=tasks.noop_effect_once.apply_async,
                        queue="bulk", count=tasks_count, pool=deployed)
    figures.append(figure(
        benchmark="throughput", name=f"drain {tasks_count:,} effect-once no-ops, "
        f"pool of {deployed}", unit="tasks/s", template=effect_once["rate"],
        baseline=next(row["baseline"] for row in figures if f"pool of {deployed}" in
                      row["figure"])))
    return figures


def fetch_figure(*, count: int, rounds: int) -> dict:
    """The atomic fetch's cost: the same worker on both transports, rounds alternating."""
    pool = os.cpu_count() or 1
    rates: dict[str, list[float]] = {"atomic": [], "stock": []}
    for _ in range(rounds):
        for transport, env in (("stock", {"BROKER_TRANSPORT": "redis"}), ("atomic", {})):
            rates[transport].append(drain(kind=TEMPLATE, send=tasks.noop.apply_async,
                                          queue="bulk", count=count, pool=pool,
                                          env=env)["rate"])
    atomic, stock = statistics.median(rates["atomic"]), statistics.median(rates["stock"])
    return figure(benchmark="throughput", name=f"drain {count:,} no-ops, pool of {pool}, "
                  "atomic fetch", unit="tasks/s", template=atomic, baseline=stock,
                  baseline_label="kombu's stock Redis transport", target=">= 0.95 of stock",
                  met=atomic >= 0.95 * stock)


def drain(*, kind: str, send: Callable, queue: str, count: int, pool: int,
          env: dict[str, str] | None = None) -> dict:
    """Drain rate; resident memory (KiB) of the worker's main and pool processes after a
    warm-up of WARMUP tasks and once the queue is empty; and the CPU time those processes
    spent per task, start-up and warm-up included (µs)."""
    harness.broker().flushdb()
    harness.fill(send=send, queue=queue, count=count + WARMUP)
    name = f"drain-{kind.split()[0]}-{pool}"
    memory = {}

    def sample(left: int) -> None:
        if "before" not in memory and left <= count:
            memory["before"] = worker_rss(worker.pid)

    with harness.running(kind=kind, name=name, concurrency=pool,
                         queues=queue if kind == TEMPLATE else None, env=env) as worker:
        taken, seconds = harness.wait_drained(queue=queue, on_left=sample)
        memory["after"] = worker_rss(worker.pid)
        cpu = harness.cpu_seconds(worker.pid) + sum(
            harness.cpu_seconds(child) for child in harness.pool_children(worker.pid))
    return {"rate": round(taken / seconds, 1), "cpu_us": round(cpu * 1e6 / (count + WARMUP), 1),
            **memory}


def worker_rss(pid: int) -> dict:
    return {"main": harness.rss_kib(pid),
            "pool": [harness.rss_kib(child) for child in harness.pool_children(pid)]}


def memory_figures(*, template: dict, baseline: dict, count: int) -> list[dict]:
    rows = []
    for part, measure in (("main process", lambda rss: rss["main"]),
                          ("pool processes, mean", lambda rss: sum(rss["pool"]) /
                           len(rss["pool"])),
                          ("whole worker", lambda rss: rss["main"] + sum(rss["pool"]))):
        growth = {side: round(100 * (measure(run["after"]) / measure(run["before"]) - 1), 1)
                  for side, run in (("template", template), ("baseline", baseline))}
        whole = part == "whole worker"
        rows.append(figure(
            benchmark="memory", name=f"RSS growth over {count:,} tasks, {part}", unit="%",
            template=growth["template"], baseline=growth["baseline"], ratio=False,
            target="<= 10 %" if whole else "",
            met=growth["template"] <= 10 if whole else None))
        rows.append(figure(
            benchmark="memory", name=f"RSS after {count:,} tasks, {part}", unit="MiB",
            template=round(measure(template["after"]) / 1024, 1),
            baseline=round(measure(baseline["after"]) / 1024, 1)))
    return rows


def enqueue_figures(*, count: int, rounds: int = 3) -> list[dict]:
    """Median of `rounds` rounds, the three ways taking turns, so that drift in the
    machine's speed during the run falls on all of them alike."""

    def on_commit() -> None:
        with transaction.atomic():
            tasks.noop.delay_on_commit()

    def outbox() -> None:
        with transaction.atomic():
            tasks.noop_effect_once.delay_via_outbox()

    ways = {"plain": plain.noop.apply_async, "on_commit": on_commit, "outbox": outbox}
    rates = {way: [] for way in ways}
    for _ in range(rounds):
        for way, call in ways.items():
            harness.broker().flushdb()
            rates[way].append(enqueue_rate(call, count=count))
    harness.broker().flushdb()
    baseline = statistics.median(rates["plain"])
    return [figure(benchmark="throughput", name=name, unit="jobs/s",
                   template=statistics.median(rates[way]), baseline=baseline,
                   baseline_label="plain apply_async")
            for name, way in (("enqueue from a service, after commit", "on_commit"),
                              ("enqueue from a service, outbox", "outbox"))]


def enqueue_rate(call: Callable[[], object], *, count: int) -> float:
    call()  # connections and caches warm
    started = time.perf_counter()
    for _ in range(count):
        call()
    return round(count / (time.perf_counter() - started), 1)


if __name__ == "__main__":
    main()
