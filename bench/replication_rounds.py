"""The rounds of bench/replication.py, in a process whose broker is the group's Sentinels."""

import argparse
import statistics

from celery.utils import uuid
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from apps.analytics.models import Event
from bench import harness, tasks
from bench.harness import figure
from bench.throughput import enqueue_rate
from workers.core.models import OutboxMessage
from workers.core.outbox import outbox_enqueue_many

WAYS = ("outbox, replica", "outbox, primary", "on_commit", "bulk, replica", "bulk, primary")


def main() -> None:
    parser = argparse.ArgumentParser(description="bench.replication's rounds")
    parser.add_argument("--enqueue", type=int, default=1_000)
    parser.add_argument("--bulk-enqueue", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bulk = args.bulk_enqueue

    def service(enqueue) -> None:
        with transaction.atomic():
            Event.objects.create(name="signup", occurred_at=timezone.now(), properties={})
            enqueue()

    def bulk_outbox() -> None:
        with transaction.atomic():
            outbox_enqueue_many(jobs=[OutboxMessage(
                task_id=uuid(), task_name=tasks.noop_effect_once.name, queue="bulk")
                for _ in range(bulk)])

    calls = {
        "outbox, replica": (1, lambda: service(tasks.noop_effect_once.delay_via_outbox), 1),
        "outbox, primary": (0, lambda: service(tasks.noop_effect_once.delay_via_outbox), 1),
        "on_commit": (0, lambda: service(tasks.noop.delay_on_commit), 1),
        "bulk, replica": (1, bulk_outbox, bulk),
        "bulk, primary": (0, bulk_outbox, bulk),
    }
    rates: dict[str, list[float]] = {way: [] for way in WAYS}
    with harness.bench_database():
        for _ in range(args.rounds):
            for way, (replicas, call, jobs) in calls.items():
                harness.broker().flushdb()
                with override_settings(BROKER_MIN_REPLICAS=replicas):
                    rates[way].append(enqueue_rate(call, count=args.enqueue if jobs == 1
                                                   else 1, jobs=jobs))
                    unmarked = OutboxMessage.objects.filter(published_at=None).count()
                    assert unmarked == 0, f"{way}: {unmarked} rows not marked published"
        harness.broker().flushdb()
    rate = {way: statistics.median(values) for way, values in rates.items()}
    harness.save("replication", [
        figure(benchmark="replication", name="service writing a row, outbox, replica-held",
               unit="calls/s", template=rate["outbox, replica"],
               baseline=rate["outbox, primary"], baseline_label="the same, primary's word"),
        figure(benchmark="replication", name="the same, replica-held outbox vs after commit",
               unit="calls/s", template=rate["outbox, replica"], baseline=rate["on_commit"],
               baseline_label="the same service with delay_on_commit"),
        figure(benchmark="replication", name=f"bulk outbox enqueue, {bulk:,} jobs, "
               "replica-held", unit="jobs/s", template=rate["bulk, replica"],
               baseline=rate["bulk, primary"], baseline_label="the same, primary's word"),
    ], rounds=args.rounds, enqueued=args.enqueue, bulk_enqueued=bulk)
