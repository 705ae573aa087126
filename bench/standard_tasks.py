"""Django's standard task API (`@task`, workers/core/task_backend.py) against the same
no-op written as a Celery task on the platform.

    python -m bench.standard_tasks [--tasks 4000] [--rounds 3] [--enqueue 1000]

A standard task runs as a platform task that keeps its result in Redis (a write at enqueue
that travels beside the publish, a script at start, a pipeline at the end) and imports its
function by path; its baseline is the same no-op as a Celery task on the platform. Drains: the queue
is filled first (harness.fill), then one worker at the deployed pool size starts; rounds
take turns and each figure is a median. Enqueue: one process, `enqueue()` against
`apply_async()`, outside a transaction, rounds taking turns.
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable

from bench import harness, tasks
from bench.harness import TEMPLATE, figure
from bench.throughput import drain

STANDARD = "standard @task"
CELERY = "Celery task"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--enqueue", type=int, default=1_000)
    args = parser.parse_args()
    with harness.bench_database():
        figures = [*drain_figures(count=args.tasks, rounds=args.rounds),
                   *enqueue_figures(count=args.enqueue, rounds=args.rounds)]
    harness.save("standard_tasks", figures, tasks=args.tasks, rounds=args.rounds,
                 enqueued=args.enqueue)


def drain_figures(*, count: int, rounds: int) -> list[dict]:
    pool = os.cpu_count() or 1
    sides: dict[str, Callable[[], object]] = {
        CELERY: tasks.noop.apply_async, STANDARD: tasks.standard_noop.enqueue}
    rates: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(rounds):
        for side, send in sides.items():
            rates[side].append(drain(kind=TEMPLATE, send=send, queue="bulk", count=count,
                                     pool=pool)["rate"])
    rate = {side: statistics.median(values) for side, values in rates.items()}
    return [figure(benchmark="standard tasks", name=f"drain {count:,} standard no-ops, pool "
                   f"of {pool}", unit="tasks/s", template=rate[STANDARD], baseline=rate[CELERY],
                   baseline_label=CELERY, target=">= 0.90 of the Celery task",
                   met=rate[STANDARD] >= 0.9 * rate[CELERY])]


def enqueue_figures(*, count: int, rounds: int) -> list[dict]:
    ways: dict[str, Callable[[], object]] = {
        CELERY: tasks.noop.apply_async, STANDARD: tasks.standard_noop.enqueue}
    rates: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, call in ways.items():
            harness.broker().flushdb()
            call()  # connections warm
            started = time.perf_counter()
            for _ in range(count):
                call()
            rates[way].append(round(count / (time.perf_counter() - started), 1))
    harness.broker().flushdb()
    rate = {way: statistics.median(values) for way, values in rates.items()}
    return [figure(benchmark="standard tasks", name="enqueue, outside a transaction",
                   unit="jobs/s", template=rate[STANDARD], baseline=rate[CELERY],
                   baseline_label=CELERY, target=">= 0.90 of the Celery task",
                   met=rate[STANDARD] >= 0.9 * rate[CELERY])]


if __name__ == "__main__":
    main()
