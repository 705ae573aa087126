"""`/metrics`: the whole fleet in one Prometheus scrape of any web process.

Everything is read at scrape time, so every web process (and every gunicorn worker in
it) answers the same: per-task counters and histograms that the worker processes flushed
to Redis (workers/runtime/metric_store.py), worker heartbeats, queue depth and age from the
broker, dead letters, the outbox and beat's schedule from the database. Names and labels
follow celery-exporter where they overlap; the rest is what only the platform knows.
No label holds a task id or an argument: series are bounded by task names, queues,
exception types, hosts and beat entries.

A source that cannot be read (Redis or the database down) is reported as
`celery_metrics_source_up{source=...} 0` and its families are left out, rather than the
scrape failing as a whole.
"""

import hmac
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_celery_beat.models import PeriodicTask
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from workers.core.outbox import outbox_pending_stats
from workers.core.queue_stats import queue_stats
from workers.core.routing import QUEUES
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.spool import dead_letter_spool_set_aside_size, dead_letter_spool_size
from workers.runtime.attempts import retrying_by_queue
from workers.runtime.heartbeat_records import (
    live_workers_by_queue,
    read_beat_tick,
    read_worker_heartbeats,
    worker_is_up,
)
from workers.runtime.metric_store import FAMILIES, parse_field, read_hosts

logger = logging.getLogger(__name__)


class PlatformCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        source_up = GaugeMetricFamily("celery_metrics_source_up", "1 if the scrape could "
                                      "read this source.", labels=["source"])
        for source, read in (("redis", _redis_families), ("database", _database_families)):
            families, up = _guarded(read)
            yield from families
            source_up.add_metric([source], up)
        yield source_up


def _guarded(read: Callable[[], list[Metric]]) -> tuple[list[Metric], float]:
    try:
        return read(), 1.0
    except Exception:  # any source error: report it down and serve the rest
        logger.warning("/metrics: %s not read", read.__name__, exc_info=True)
        return [], 0.0


def _redis_families() -> list[Metric]:
    return [*_task_families(read_hosts()), *_worker_families(read_worker_heartbeats()),
            *_queue_families(), *_beat_tick_families(), *_spool_families()]


def _task_families(hosts: dict[str, dict[str, float]]) -> list[Metric]:
    series: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    for host, values in hosts.items():
        for raw, value in values.items():
            name, labels = parse_field(raw)
            key = (host, *labels)
            series[name][key] = series[name].get(key, 0.0) + value
    families: list[Metric] = []
    for family in FAMILIES.values():
        labels = ["hostname", *family.labels]
        if family.kind == "counter":
            counter = CounterMetricFamily(family.name, family.help, labels=labels)
            for key, value in sorted(series[family.name].items()):
                counter.add_metric(list(key), value)
            families.append(counter)
            continue
        histogram = HistogramMetricFamily(family.name, family.help, labels=labels)
        buckets = series[family.name + "_bucket"]
        for key, count in sorted(series[family.name + "_count"].items()):
            cumulative, points = 0.0, []
            for index, bound in enumerate(family.buckets):
                cumulative += buckets.get((*key, str(index)), 0.0)
                points.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            points[-1] = ("+Inf", count)
            histogram.add_metric(list(key), points,
                                 series[family.name + "_sum"].get(key, 0.0))
        families.append(histogram)
    return families


def _worker_families(beats: dict[str, dict[str, Any]]) -> list[Metric]:
    now = time.time()
    up = GaugeMetricFamily("celery_worker_up", "1 if the worker sent a heartbeat within "
                           "METRICS_WORKER_UP_AGE seconds.", labels=["hostname"])
    active = GaugeMetricFamily("celery_worker_tasks_active", "Tasks the worker was running "
                               "at its last heartbeat.", labels=["hostname"])
    last = GaugeMetricFamily("celery_worker_last_heartbeat_timestamp_seconds", "When the "
                             "worker last beat (Unix time).", labels=["hostname"])
    concurrency = GaugeMetricFamily("celery_worker_concurrency", "Pool processes (or "
                                    "threads) the worker runs tasks in.", labels=["hostname"])
    started = GaugeMetricFamily("celery_worker_started_timestamp_seconds", "When the worker "
                                "started (Unix time).", labels=["hostname"])
    workers = GaugeMetricFamily("celery_queue_active_workers", "Live workers consuming the "
                                "queue.", labels=["queue_name"])
    for name, beat in sorted(beats.items()):
        alive = worker_is_up(beat, now=now)
        up.add_metric([name], 1.0 if alive else 0.0)
        active.add_metric([name], beat["active"] if alive else 0.0)
        last.add_metric([name], beat["at"])
        if beat.get("concurrency") is not None:
            concurrency.add_metric([name], beat["concurrency"])
        if beat.get("started_at"):
            started.add_metric([name], beat["started_at"])
    for queue, count in sorted(live_workers_by_queue(beats, queues=QUEUES, now=now).items()):
        workers.add_metric([queue], count)
    return [up, active, last, concurrency, started, workers]


def _queue_families() -> list[Metric]:
    length = GaugeMetricFamily("celery_queue_length", "Messages waiting in the queue.",
                               labels=["queue_name"])
    age = GaugeMetricFamily("celery_queue_oldest_age_seconds", "Age of the oldest waiting "
                            "message (0 when the queue is empty; on RabbitMQ an estimate from "
                            "when messages entered it, to 10 s).", labels=["queue_name"])
    retrying = GaugeMetricFamily("celery_queue_retrying", "Jobs of the queue that failed "
                                 "and wait for their next attempt.", labels=["queue_name"])
    for stats in queue_stats(queues=QUEUES):
        length.add_metric([stats.name], stats.waiting)
        if stats.oldest_age_seconds is not None or not stats.waiting:
            age.add_metric([stats.name], stats.oldest_age_seconds or 0.0)
    counts = retrying_by_queue(now=time.time())
    for queue in QUEUES:
        retrying.add_metric([queue], counts.get(queue, 0))
    return [length, age, retrying]


def _beat_tick_families() -> list[Metric]:
    tick = read_beat_tick()
    family = GaugeMetricFamily("celery_beat_last_tick_timestamp_seconds", "When the beat "
                               "holding the scheduler lock last ticked (Unix time).")
    if tick is not None:
        family.add_metric([], tick)
    return [family]


def _spool_families() -> list[Metric]:
    return [GaugeMetricFamily("celery_dead_letter_spool_length", "Dead letters kept in Redis "
                              "until the database is reachable again.",
                              value=dead_letter_spool_size()),
            GaugeMetricFamily("celery_dead_letter_spool_set_aside", "Dead letters the "
                              "database refused, set aside in Redis for an operator.",
                              value=dead_letter_spool_set_aside_size())]


def _database_families() -> list[Metric]:
    by_status = GaugeMetricFamily("celery_dead_letters", "Dead letters by status.",
                                  labels=["status"])
    counts = dict(DeadLetter.objects.order_by().values_list("status").annotate(n=Count("id")))
    for status in DeadLetter.Status.values:
        by_status.add_metric([status], counts.get(status, 0))
    new = GaugeMetricFamily("celery_dead_letters_new", "Dead letters not yet triaged, by "
                            "task and exception.", labels=["name", "exception"])
    per_cause: dict[tuple[str, str], int] = defaultdict(int)
    for task, exception, n in (DeadLetter.objects.filter(status=DeadLetter.Status.NEW).order_by()
                               .values_list("task_name", "exception_type")
                               .annotate(n=Count("id"))):
        per_cause[(task, exception.rpartition(".")[2])] += n
    for (task, exception), n in sorted(per_cause.items()):
        new.add_metric([task, exception], n)
    fingerprints = GaugeMetricFamily(
        "celery_dead_letter_fingerprints_open", "Distinct failure fingerprints among the "
        "dead letters not yet triaged.",
        value=DeadLetter.objects.filter(status=DeadLetter.Status.NEW).order_by()
        .values("fingerprint").distinct().count())
    pending, oldest_age = outbox_pending_stats(now=timezone.now())
    outbox = GaugeMetricFamily("celery_outbox_pending", "Outbox rows not yet published.",
                               value=pending)
    outbox_age = GaugeMetricFamily("celery_outbox_oldest_age_seconds", "Age of the oldest "
                                   "unpublished outbox row (0 when none).",
                                   value=oldest_age or 0.0)
    entries = GaugeMetricFamily("celery_beat_entry_last_run_timestamp_seconds", "When beat "
                                "last sent each enabled entry (Unix time).", labels=["entry"])
    for name, last_run in (PeriodicTask.objects.filter(enabled=True, last_run_at__isnull=False)
                           .values_list("name", "last_run_at").order_by("name")):
        entries.add_metric([name], last_run.timestamp())
    return [by_status, new, fingerprints, outbox, outbox_age, entries]


_registry = CollectorRegistry(auto_describe=False)
_registry.register(PlatformCollector())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The exposition, to a bearer of METRICS_TOKEN; 404 while no token is set."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off: set METRICS_TOKEN")
    offered = request.headers.get("Authorization", "")
    if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("a bearer token is required\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
