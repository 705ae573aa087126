"""Throughput: no-op tasks drained per second per pool size, and jobs enqueued per second
by a service, through the template against plain Celery.

    python -m bench.throughput [--tasks 8000] [--rounds 3] [--memory-tasks 100000]
                               [--pools 2 4] [--enqueue 1000] [--bulk-enqueue 10000]

Drain: the queue is filled first, then one worker starts; the rate runs from the first
message taken to the last one acknowledged, read by polling Redis, so tasks write nothing.
The template's no-op runs on the project's base task and settings: late acks, time limits,
child recycling, the dead-letter, dedup and replay hooks, a log line per task received
and done, task events (what Flower's task views and Prometheus metrics are built from)
and metrics. Its effect-once variant adds a database transaction per task. The plain
no-op runs on bench/plain.py. Per pool size, ROUNDS rounds take turns (plain, template,
effect-once, kombu's stock transport) and each figure is the median of its rounds.

Fetch: the template's worker on its atomic-fetch Redis transport (the template rounds
above) against the same worker on kombu's stock one (BROKER_TRANSPORT=redis).

Memory: one drain of `--memory-tasks` per side at the deployed pool size.

Enqueue: one process, one service call per job, medians of rounds: plain `apply_async`;
a service that writes a row (a product event) and enqueues with `delay_on_commit`, and
the same service enqueueing with `delay_via_outbox`, taking turns in blocks of
ENQUEUE_BLOCK calls; and a bulk outbox enqueue (`outbox_enqueue_many`, every job in one
transaction) against plain `apply_async` of as many jobs.
"""

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable

from celery.utils import uuid
from django.db import transaction
from django.utils import timezone

from apps.analytics.models import Event
from bench import harness, plain, tasks
from bench.harness import PLAIN, TEMPLATE, figure
from workers.core.models import OutboxMessage, TaskEffect
from workers.core.outbox import outbox_enqueue_many
from workers.core.outbox_marks import outbox_marks_flush

WARMUP = 1000  # tasks drained before the first memory sample
STOCK = "stock transport"
EFFECT_ONCE = "effect-once"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-tasks", type=int, default=100_000,
                        help="drained by the deployed pool size (one process per core)")
    parser.add_argument("--pools", type=int, nargs="+",
                        default=[os.cpu_count() or 1, 2 * (os.cpu_count() or 1)])
    parser.add_argument("--enqueue", type=int, default=1_000)
    parser.add_argument("--bulk-enqueue", type=int, default=10_000)
    args = parser.parse_args()
    with harness.bench_database():
        figures = [*drain_figures(count=args.tasks, rounds=args.rounds, pools=args.pools),
                   *memory_figures(count=args.memory_tasks),
                   *enqueue_figures(count=args.enqueue, bulk=args.bulk_enqueue,
                                    rounds=args.rounds)]
    harness.save("throughput", figures, tasks=args.tasks, rounds=args.rounds,
                 memory_tasks=args.memory_tasks, pools=args.pools, enqueued=args.enqueue,
                 bulk_enqueued=args.bulk_enqueue, warmup=WARMUP)


def drain_figures(*, count: int, rounds: int, pools: list[int]) -> list[dict]:
    """Per pool size, rounds taking turns; at the deployed size also the effect-once and
    the stock-transport drains."""
    deployed = os.cpu_count() or 1
    figures = []
    for pool in pools:
        sides: dict[str, tuple[Callable[..., object], str, str, dict[str, str]]] = {
            PLAIN: (plain.noop.apply_async, "celery", PLAIN, {}),
            TEMPLATE: (tasks.noop.apply_async, "bulk", TEMPLATE, {})}
        if pool == deployed:
            sides[EFFECT_ONCE] = (tasks.noop_effect_once.apply_async, "bulk", TEMPLATE, {})
            sides[STOCK] = (tasks.noop.apply_async, "bulk", TEMPLATE,
                            {"BROKER_TRANSPORT": "redis"})
        rates: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(rounds):
            for side, (send, queue, kind, env) in sides.items():
                TaskEffect.objects.all().delete()
                rates[side].append(drain(kind=kind, send=send, queue=queue, count=count,
                                         pool=pool, env=env)["rate"])
        rate = {side: statistics.median(values) for side, values in rates.items()}
        figures.append(figure(
            benchmark="throughput", name=f"drain {count:,} no-ops, pool of {pool}",
            unit="tasks/s", template=rate[TEMPLATE], baseline=rate[PLAIN],
            target=">= 1.00 of plain", met=rate[TEMPLATE] >= rate[PLAIN]))
        if pool == deployed:
            figures.append(figure(
                benchmark="throughput", name=f"drain {count:,} effect-once no-ops, "
                f"pool of {pool}", unit="tasks/s", template=rate[EFFECT_ONCE],
                baseline=rate[PLAIN], target=">= 0.85 of plain",
                met=rate[EFFECT_ONCE] >= 0.85 * rate[PLAIN]))
            figures.append(figure(
                benchmark="throughput", name=f"drain {count:,} no-ops, pool of {pool}, "
                "atomic fetch", unit="tasks/s", template=rate[TEMPLATE],
                baseline=rate[STOCK], baseline_label="kombu's stock Redis transport",
                target=">= 0.95 of stock", met=rate[TEMPLATE] >= 0.95 * rate[STOCK]))
    return figures


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


def memory_figures(*, count: int) -> list[dict]:
    """Resident memory of each side's worker, at the deployed pool size, after a warm-up
    and after `count` more tasks.

    The two sides drain at the same time, each from its own queue: what is measured here
    is memory, not a rate, and one after the other the two drains took almost half of
    `make bench`.
    """
    pool = os.cpu_count() or 1
    sides = {PLAIN: (plain.noop.apply_async, "celery"), TEMPLATE: (tasks.noop.apply_async, "bulk")}
    harness.broker().flushdb()
    for send, queue in sides.values():
        harness.fill(send=send, queue=queue, count=count + WARMUP)
    runs: dict[str, dict] = {side: {} for side in sides}
    with contextlib.ExitStack() as stack:
        workers = {side: stack.enter_context(harness.running(
            kind=side, name=f"memory-{side.split()[0]}", concurrency=pool,
            queues=queue if side == TEMPLATE else None)) for side, (_, queue) in sides.items()}

        def sample(left: dict[str, int]) -> None:
            for side, (_, queue) in sides.items():
                if "before" not in runs[side] and left[queue] <= count:
                    runs[side]["before"] = worker_rss(workers[side].pid)

        harness.wait_empty(queues=[queue for _, queue in sides.values()], on_left=sample)
        for side, worker in workers.items():
            runs[side]["after"] = worker_rss(worker.pid)
    template, baseline = runs[TEMPLATE], runs[PLAIN]
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


def enqueue_figures(*, count: int, bulk: int, rounds: int) -> list[dict]:
    """Medians of `rounds` rounds. In each round the one-job ways take turns in blocks of
    ENQUEUE_BLOCK calls, so that a moment of the machine's drift or a background write
    (autovacuum after the bulk rounds) falls on all of them alike, where a way's whole
    round could meet it alone; then the bulk ways."""

    def product_event() -> None:
        Event.objects.create(name="signup", occurred_at=timezone.now(), properties={})

    def on_commit() -> None:
        with transaction.atomic():
            product_event()
            tasks.noop.delay_on_commit()

    def outbox() -> None:
        with transaction.atomic():
            product_event()
            tasks.noop_effect_once.delay_via_outbox()

    def bulk_plain() -> None:
        for _ in range(bulk):
            plain.noop.apply_async()

    def bulk_outbox() -> None:
        with transaction.atomic():
            outbox_enqueue_many(jobs=[OutboxMessage(
                task_id=uuid(), task_name=tasks.noop_effect_once.name, queue="bulk")
                for _ in range(bulk)])

    singles = {"plain": plain.noop.apply_async, "on_commit": on_commit, "outbox": outbox}
    bulks = {"plain": bulk_plain, "outbox": bulk_outbox}
    rates: dict[str, list[float]] = {way: [] for way in [*singles, "bulk plain", "bulk outbox"]}
    for call in singles.values():
        call()  # connections and caches warm
    outbox_marks_flush()
    blocks = max(1, count // ENQUEUE_BLOCK)
    for _ in range(rounds):
        spent = dict.fromkeys(singles, 0.0)
        for _ in range(blocks):
            for way, call in singles.items():
                harness.broker().flushdb()
                spent[way] += enqueue_seconds(call, calls=ENQUEUE_BLOCK)
        for way, seconds in spent.items():
            rates[way].append(round(blocks * ENQUEUE_BLOCK / seconds, 1))
        for way, call in bulks.items():
            harness.broker().flushdb()
            # The caller's rate: its jobs' marks are written by a thread after the commit,
            # off its path (here after the timing, not in the middle of the next way's).
            rates[f"bulk {way}"].append(enqueue_rate(call, count=1, jobs=bulk))
            outbox_marks_flush()
    harness.broker().flushdb()
    rate = {way: statistics.median(values) for way, values in rates.items()}
    return [
        figure(benchmark="throughput", name="enqueue from a service, after commit",
               unit="jobs/s", template=rate["on_commit"], baseline=rate["plain"],
               baseline_label="plain apply_async"),
        figure(benchmark="throughput", name="service writing a row, outbox vs after commit",
               unit="calls/s", template=rate["outbox"], baseline=rate["on_commit"],
               baseline_label="the same service with delay_on_commit",
               target=">= 0.80 of after commit",
               met=rate["outbox"] >= 0.8 * rate["on_commit"]),
        figure(benchmark="throughput", name=f"bulk outbox enqueue, {bulk:,} jobs in one "
               "transaction", unit="jobs/s", template=rate["bulk outbox"],
               baseline=rate["bulk plain"], baseline_label="plain apply_async, one by one",
               target=">= 10,000 jobs/s", met=rate["bulk outbox"] >= 10_000),
    ]


#: One-job calls a way makes before the next way's turn (`enqueue_figures`).
ENQUEUE_BLOCK = 100


def enqueue_rate(call: Callable[[], object], *, count: int, jobs: int = 1) -> float:
    """Jobs per second over `count` calls that enqueue `jobs` each (after one warm-up),
    the outbox's marks left to their thread."""
    call()  # connections and caches warm
    return round(count * jobs / enqueue_seconds(call, calls=count, marks=False), 1)


def enqueue_seconds(call: Callable[[], object], *, calls: int, marks: bool = True) -> float:
    """Seconds for `calls` calls. With `marks`, ending with the marks of the outbox rows
    they published: written by a thread after each commit, they would otherwise fall on
    the next way's block; the outbox is charged for them here."""
    started = time.perf_counter()
    for _ in range(calls):
        call()
    if marks:
        outbox_marks_flush()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
