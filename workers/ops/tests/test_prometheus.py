"""`/metrics` scraped from a real web process while a real prefork worker runs tasks."""

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
import redis
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import DeadLetterFactory
from tests.fixtures import PRIVATE_BROKER, publish_task, wait_for
from workers.core.headers import ENQUEUED_AT_HEADER
from workers.core.models import OutboxMessage
from workers.dead_letters.spool import SET_ASIDE_KEY, SPOOL_KEY
from workers.runtime.attempts import RETRYING_INFO_KEY, RETRYING_KEY
from workers.runtime.heartbeat_records import BEAT_TICK_KEY, WORKERS_KEY

TOKEN = "test-metrics-token"  # tests/settings.py


def scrape(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(text: str, metric: str, **labels: str) -> float:
    """Sum of the samples of `metric` whose labels include `labels` (0 if none)."""
    return sum(v for (sample, sample_labels), v in samples(text).items()
               if sample == metric and set(labels.items()) <= set(sample_labels))


def test_metrics_need_the_bearer_token(web_process):
    assert scrape(web_process, token=None)[0] == 401
    assert scrape(web_process, token="wrong")[0] == 401
    assert scrape(web_process)[0] == 200


def test_metrics_are_not_served_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_task_figures_add_up_across_pool_children_and_recycled_ones(celery_process,
                                                                    web_process):
    """Two children, each replaced after three tasks: every run is counted exactly once."""
    celery_process("worker", "-c", "2", METRICS_FLUSH_INTERVAL="0.2",
                   WORKER_HEARTBEAT_INTERVAL="0.5", WORKER_MAX_TASKS_PER_CHILD="3")
    for n in range(10):
        publish_task(PRIVATE_BROKER, "tests.tasks.log_line", f"m-{n}")
    publish_task(PRIVATE_BROKER, "tests.tasks.transient_until", "m-retry", 1)
    publish_task(PRIVATE_BROKER, "tests.tasks.undeclared", "m-fail")

    def settled() -> str | None:
        text = scrape(web_process)[1]
        done = (value(text, "celery_task_succeeded_total", name="tests.tasks.log_line") == 10
                and value(text, "celery_task_succeeded_total",
                          name="tests.tasks.transient_until") == 1
                and value(text, "celery_task_failed_total", name="tests.tasks.undeclared") == 1)
        return text if done else None

    text = str(wait_for(settled, what="every run to be counted"))
    log_line = {"name": "tests.tasks.log_line", "queue_name": "critical"}
    assert value(text, "celery_task_started_total", **log_line) == 10
    assert value(text, "celery_task_received_total", **log_line) == 10
    assert value(text, "celery_task_runtime_count", **log_line) == 10
    assert value(text, "celery_task_queue_wait_time_count", **log_line) == 10
    assert value(text, "celery_task_queue_wait_time_bucket", le="+Inf", **log_line) == 10
    assert value(text, "celery_task_retried_total", name="tests.tasks.transient_until") == 1
    assert value(text, "celery_task_failed_total", name="tests.tasks.undeclared",
                 exception="ValueError", hostname="test") == 1
    assert value(text, "celery_worker_up", hostname="private-0@test") == 1
    assert value(text, "celery_queue_active_workers", queue_name="critical") == 1
    assert value(text, "celery_queue_active_workers", queue_name="bulk") == 0
    assert value(text, "celery_dead_letters", status="new") == 1
    assert value(text, "celery_dead_letters_new", name="tests.tasks.undeclared",
                 exception="ValueError") == 1
    assert value(text, "celery_metrics_source_up", source="redis") == 1
    assert value(text, "celery_metrics_source_up", source="database") == 1
    for name in ("task_id", "args", "kwargs"):
        assert f'{name}="' not in text  # bounded cardinality: no per-job labels


def test_platform_figures_and_promtool_accepts_the_exposition(celery_process, web_process):
    broker = redis.Redis.from_url(PRIVATE_BROKER)
    # Waiting work: a message enqueued ten minutes ago that nobody consumes.
    publish_task(PRIVATE_BROKER, "tests.tasks.log_line", "stale",
                 headers={ENQUEUED_AT_HEADER: time.time() - 600})
    publish_task(PRIVATE_BROKER, "tests.tasks.log_line", "urgent", priority=9)  # its own list
    OutboxMessage.objects.create(task_id="outbox-old", task_name="tests.tasks.log_line",
                                 queue="critical", created_at=timezone.now()
                                 - timedelta(minutes=5))
    DeadLetterFactory.create_batch(3, task_name="app.a", message="order 1 failed")
    DeadLetterFactory(task_name="app.b", status="discarded")
    every_minute = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)
    sent = timezone.now() - timedelta(seconds=30)
    PeriodicTask.objects.create(name="metrics entry", task="tests.tasks.log_line",
                                interval=every_minute, last_run_at=sent)
    broker.set(BEAT_TICK_KEY, time.time())
    # A job waiting for its retry, and a worker's heartbeat: what the console lists.
    broker.zadd(RETRYING_KEY, {"retry-1": time.time() + 60})
    broker.hset(RETRYING_INFO_KEY, "retry-1", json.dumps({
        "task_id": "retry-1", "task": "tests.tasks.log_line", "queue": "critical",
        "attempt": 1, "due_at": time.time() + 60, "exception_type": "x.Y", "message": "m"}))
    started_at = time.time() - 60
    broker.hset(WORKERS_KEY, "critical@metrics", json.dumps({
        "at": time.time(), "queues": ["critical"], "active": 1, "concurrency": 3,
        "pool": "prefork", "started_at": started_at}))

    status, text = scrape(web_process)
    assert status == 200
    assert value(text, "celery_queue_length", queue_name="critical") == 2
    assert value(text, "celery_queue_oldest_age_seconds", queue_name="critical") >= 600
    assert value(text, "celery_outbox_pending") == 1
    assert value(text, "celery_outbox_oldest_age_seconds") >= 300
    assert value(text, "celery_dead_letters", status="new") == 3
    assert value(text, "celery_dead_letters", status="discarded") == 1
    assert value(text, "celery_dead_letter_fingerprints_open") == 1
    assert value(text, "celery_beat_entry_last_run_timestamp_seconds",
                 entry="metrics entry") == pytest.approx(sent.timestamp())
    assert value(text, "celery_beat_last_tick_timestamp_seconds") > 0
    assert value(text, "celery_queue_retrying", queue_name="critical") == 1
    assert value(text, "celery_queue_retrying", queue_name="bulk") == 0
    assert value(text, "celery_worker_concurrency", hostname="critical@metrics") == 3
    assert value(text, "celery_worker_started_timestamp_seconds",
                 hostname="critical@metrics") == pytest.approx(started_at)

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, check=False, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.django_db
def test_the_dead_letter_spool_and_what_it_set_aside_are_counted(client, test_redis):
    """Set-aside entries are never drained: this count is how an operator hears of them."""
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)
    test_redis.rpush(SPOOL_KEY, "{}")
    test_redis.rpush(SET_ASIDE_KEY, "{}", "{}")
    try:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    finally:
        test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)

    text = response.content.decode()
    assert value(text, "celery_dead_letter_spool_length") == 1
    assert value(text, "celery_dead_letter_spool_set_aside") == 2
