"""Metrics: what recording per-task figures and scraping `/metrics` cost the workers.

    python -m bench.metrics [--tasks 20000] [--rounds 3] [--scrape-every 1.0]

The template's worker (one pool process per core) drains no-ops three ways each round, the
order rotating: metrics off (METRICS_ENABLED=false); metrics recorded but not scraped;
recorded while this process scrapes the whole exposition every `--scrape-every` seconds
(Prometheus' default is 15 s; one second magnifies the cost). Each figure is the median of
its rounds, as a ratio to metrics off: the drain rate, and the CPU time the worker's
processes spent per task (steadier than the rate on a machine shared with other work);
the drains are `bench.throughput.drain`, with its warm-up.
"""

import argparse
import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import ClassVar

from prometheus_client import generate_latest

from bench import harness, tasks
from bench.harness import figure
from bench.throughput import drain
from workers.core.headers import ENQUEUED_AT_HEADER
from workers.ops.prometheus import _registry
from workers.runtime import task_metrics
from workers.runtime.metric_store import recorder

TARGET = ">= 0.98 of metrics off"
MEDIANS = ("rate", "cpu_us")


@contextmanager
def scraping(every: float) -> Iterator[list[int]]:
    """Scrape in a thread until the block ends (never if `every` is 0); yields the list of
    exposition sizes."""
    sizes: list[int] = []
    stop = threading.Event()
    if not every:
        yield sizes
        return

    def scrape() -> None:
        while not stop.wait(every):
            sizes.append(len(generate_latest(_registry)))

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scrape-every", type=float, default=1.0)
    args = parser.parse_args()
    pool = os.cpu_count() or 1
    ways = {"off": {"METRICS_ENABLED": "false"}, "recorded": {}, "scraped": {}}
    runs: dict[str, list[dict]] = {way: [] for way in ways}
    scrapes = 0
    with harness.bench_database():
        for number in range(args.rounds):
            order = list(ways)[number % 3:] + list(ways)[:number % 3]  # no way always first
            for way in order:
                with scraping(args.scrape_every if way == "scraped" else 0) as sizes:
                    runs[way].append(drain(kind=harness.TEMPLATE,
                                           send=tasks.noop.apply_async, queue="bulk",
                                           count=args.tasks, pool=pool, env=ways[way]))
                scrapes += len(sizes)
    figures = []
    off = {key: statistics.median(run[key] for run in runs["off"]) for key in MEDIANS}
    for way, label in (("recorded", "metrics on"),
                       ("scraped", f"metrics on, scraped every {args.scrape_every:g} s")):
        median = {key: statistics.median(run[key] for run in runs[way]) for key in off}
        name = f"drain {args.tasks:,} no-ops, pool of {pool}, {label}"
        figures += [
            figure(benchmark="metrics", name=name, unit="tasks/s", template=median["rate"],
                   baseline=off["rate"], baseline_label="metrics off",
                   target=TARGET if way == "scraped" else "",
                   met=median["rate"] >= 0.98 * off["rate"] if way == "scraped" else None),
            figure(benchmark="metrics", name=f"{name}, worker CPU per task", unit="µs",
                   template=median["cpu_us"], baseline=off["cpu_us"],
                   baseline_label="metrics off")]
    handlers = handler_cost_us()
    figures.append(figure(
        benchmark="metrics", name="recording handlers, CPU per task, as a share of the "
        "worker's", unit="%", template=round(100 * handlers / off["cpu_us"], 2),
        baseline=None, ratio=False, target="<= 2 %", met=handlers <= 0.02 * off["cpu_us"]))
    harness.save("metrics", figures, tasks=args.tasks, runs=runs, scrapes=scrapes,
                 scrape_every=args.scrape_every, handler_cost_us=handlers)


class _Request(dict):
    """What the handlers read of a task's request (a no-op on bulk, enqueued 1 ms ago)."""

    hostname = "bulk@bench"
    delivery_info: ClassVar[dict[str, str]] = {"routing_key": "bulk"}
    eta = None
    is_eager = False
    name = "bench.tasks.noop"

    def get(self, key: str, default: object = None) -> object:
        return time.time() - 0.001 if key == ENQUEUED_AT_HEADER else default


def handler_cost_us(calls: int = 50_000) -> float:
    """CPU microseconds the metrics' signal handlers add to one task (received, started,
    finished), timed in this process: the drain rates above vary by more than this."""
    sender = SimpleNamespace(name="bench.tasks.noop", request=_Request())

    def one_task() -> None:
        task_metrics.count_received(request=sender.request)
        task_metrics.count_started(sender=sender, task_id="bench")
        task_metrics.count_finished(sender=sender, task_id="bench", state="SUCCESS")

    started = time.process_time()
    for _ in range(calls):
        one_task()
    cost = (time.process_time() - started) * 1e6 / calls
    recorder.flush()
    return round(cost, 2)


if __name__ == "__main__":
    main()
