"""Critical latency under a bulk flood: enqueue-to-start delay of critical tasks sent at a
steady rate while 100,000 bulk tasks of 200 ms wait and the bulk pool is busy.

The template's probes go through the outbox, as work that matters should: a transaction
writes the job and, once it commits, the job is published; the time is stamped before the
transaction, so the commit, the publish, the wait and the hand-over all count.

    python -m bench.latency [--bulk 100000] [--bulk-seconds 0.2] [--rate 100] [--seconds 10]

Three layouts, each with the same number of pool processes (two per core):
- template: worker-critical (`-Q critical`) and worker-bulk (`-Q bulk`), as deployed;
- plain Celery, one queue: every task on Celery's default queue, one worker;
- plain Celery, one worker consuming both queues (`-Q critical,bulk`).
A probe records `time.time()` minus the time stamped just before it was sent, first thing
in its body, so publishing, the wait and the hand-over to a pool process all count.
Probes that have not started GRACE seconds after the last was sent count at the time they
had waited by then: percentiles that include them are lower bounds, marked ">=".
"""

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from django.db import transaction

from bench import harness, plain, tasks
from bench.harness import PLAIN, TEMPLATE, figure, percentile
from bench.probes import LATENCY_KEY

PERCENTILES = (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
TARGETS = {"p99": 10.0, "max": 50.0}  # milliseconds, template layout, through the outbox
GRACE = 5.0  # seconds the last probe may take to start before the window closes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bulk", type=int, default=100_000)
    parser.add_argument("--bulk-seconds", type=float, default=0.2)
    parser.add_argument("--rate", type=float, default=100.0, help="critical tasks per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send them")
    args = parser.parse_args()
    pool = 2 * (os.cpu_count() or 1)
    layouts = {
        TEMPLATE: (tasks.sleep.apply_async, "bulk", probe_via_outbox, [
            {"kind": TEMPLATE, "name": "critical", "queues": "critical",
             "concurrency": pool // 2},
            {"kind": TEMPLATE, "name": "bulk", "queues": "bulk", "concurrency": pool // 2}]),
        "one shared queue": (plain.sleep.apply_async, "celery", lambda sent_at:
                             plain.probe.apply_async(args=[sent_at]), [
            {"kind": PLAIN, "name": "shared", "concurrency": pool}]),
        "one worker, both queues": (
            lambda args: plain.sleep.apply_async(args, queue="bulk"), "bulk",
            lambda sent_at: plain.probe.apply_async(args=[sent_at], queue="critical"), [
                {"kind": PLAIN, "name": "both", "queues": "critical,bulk",
                 "concurrency": pool}]),
    }
    results = {}
    with harness.bench_database():
        for layout, (send_bulk, bulk_queue, send_probe, workers) in layouts.items():
            results[layout] = measure(
                fill=lambda send=send_bulk, queue=bulk_queue: harness.fill(
                    send=lambda: send([args.bulk_seconds]), queue=queue, count=args.bulk),
                bulk_queue=bulk_queue, send_probe=send_probe, workers=workers,
                rate=args.rate, seconds=args.seconds)
    harness.save("latency", figures(results), bulk=args.bulk, bulk_seconds=args.bulk_seconds,
                 rate=args.rate, seconds=args.seconds, processes_per_layout=pool,
                 layouts={name: {k: v for k, v in result.items() if k != "latencies"}
                          for name, result in results.items()})


def probe_via_outbox(sent_at: float) -> None:
    with transaction.atomic():
        tasks.probe.delay_via_outbox(sent_at)


def measure(*, fill: Callable[[], None], bulk_queue: str, send_probe: Callable[[float], object],
            workers: list[dict], rate: float, seconds: float) -> dict:
    client = harness.broker()
    client.flushdb()
    fill()
    with started(workers):
        time.sleep(2)  # every bulk process has taken its first 200 ms task
        sent = []
        interval = 1 / rate
        first = time.monotonic()
        for n in range(int(rate * seconds)):
            time.sleep(max(0.0, first + n * interval - time.monotonic()))
            sent_at = time.time()
            send_probe(sent_at)
            sent.append(sent_at)
        deadline = time.monotonic() + GRACE
        while client.llen(LATENCY_KEY) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        closed_at = time.time()
        started_ms = [float(value) * 1000 for value in client.lrange(LATENCY_KEY, 0, -1)]
        bulk_left = client.llen(bulk_queue)
    client.flushdb()
    # Probes start in the order they were sent (one FIFO queue), so the ones still waiting
    # are the last ones sent.
    waiting_ms = [(closed_at - sent_at) * 1000 for sent_at in sent[len(started_ms):]]
    return {"latencies": started_ms + waiting_ms, "sent": len(sent),
            "not_started": len(waiting_ms), "bulk_left_at_end": bulk_left}


@contextmanager
def started(workers: list[dict]) -> Iterator[None]:
    with ExitStack() as stack:
        for worker in workers:
            process = stack.enter_context(harness.running(**worker))
            harness.wait_ready(process, kind=worker["kind"], name=worker["name"])
        yield


def figures(results: dict[str, dict]) -> list[dict]:
    template = results[TEMPLATE]
    rows = []
    for layout in (name for name in results if name != TEMPLATE):
        baseline = results[layout]
        bounds = tuple(side for side, run in (("template", template), ("baseline", baseline))
                       if run["not_started"])
        for label, p in PERCENTILES:
            value = round(percentile(template["latencies"], p), 1)
            target = TARGETS.get(label)
            rows.append(figure(
                benchmark="latency", name=f"critical {label} via the outbox, plain: {layout}",
                unit="ms",
                template=value, baseline=round(percentile(baseline["latencies"], p), 1),
                baseline_label=f"plain Celery, {layout}", lower_bounds=bounds,
                target=f"<= {target:.0f} ms" if target else "",
                met=None if target is None else value <= target and "template" not in bounds))
        rows.append(figure(
            benchmark="latency", name=f"critical not started in time, plain: {layout}",
            unit="of " + str(template["sent"]), template=template["not_started"],
            baseline=baseline["not_started"], baseline_label=f"plain Celery, {layout}",
            ratio=False))
    return rows


if __name__ == "__main__":
    main()
