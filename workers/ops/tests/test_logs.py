"""JSON logs with task context, and a correlation id from the request through every task."""

import json
import logging
import sys

import pytest

from tests.factories import CustomerFactory, invoice_event, post_event
from tests.fixtures import PRIVATE_BROKER, publish_task, wait_for
from workers.core.headers import CORRELATION_HEADER
from workers.core.models import OutboxMessage
from workers.ops.logs import TaskContextFilter


def records(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_task_log_lines_are_json_with_task_context_and_the_callers_correlation_id(
        celery_process):
    json_worker = celery_process("worker", LOG_FORMAT="json")
    publish_task(PRIVATE_BROKER, "tests.tasks.relay", "k1",
                 headers={CORRELATION_HEADER: "req-abc123"})

    def both_lines() -> list[dict] | None:
        lines = [r for r in records(json_worker) if r["message"] in ("relay k1", "log line k1")]
        return lines if len(lines) == 2 else None

    lines = wait_for(both_lines, what="both tasks to log")
    assert {r["task_name"] for r in lines} == {"tests.tasks.relay", "tests.tasks.log_line"}
    for record in lines:
        assert record["correlation_id"] == "req-abc123", record
        assert record["queue"] == "critical"
        assert record["attempt"] == 1
        assert record["task_id"]
        assert record["levelname"] == "INFO"
    assert lines[0]["task_id"] != lines[1]["task_id"]


@pytest.mark.django_db
def test_a_request_id_is_echoed_and_carried_by_the_jobs_the_request_enqueues(client):
    event = invoice_event("invoice.paid", CustomerFactory())

    response = post_event(client, event,
                          headers={"X-Request-ID": "lb-7f3a"})

    assert response["X-Request-ID"] == "lb-7f3a"
    job = OutboxMessage.objects.get(task_name="apps.billing.tasks.process_payment_event")
    assert job.headers[CORRELATION_HEADER] == "lb-7f3a"


@pytest.mark.django_db
def test_a_request_without_a_usable_id_gets_a_new_one(client):
    response = client.get("/healthz", headers={"X-Request-ID": "not an id; drop table"})
    assert response["X-Request-ID"] != "not an id; drop table"
    assert len(response["X-Request-ID"]) == 32


def test_worker_logs_show_no_secret_of_a_failed_task_or_a_poison_message(celery_process):
    """Celery logs a failed task's exception, traceback and argument reprs, and the body of
    a message naming a task nobody defines: each redacted, in the JSON format too (its
    records carry Celery's extra data)."""
    from workers.dead_letters.models import DeadLetter

    log = celery_process("worker", LOG_FORMAT="json")
    failed = publish_task(PRIVATE_BROKER, "tests.tasks.login", "alice", "tb-positional-1c9e",
                          session="tb-session-7f3b")
    poison = publish_task(PRIVATE_BROKER, "tests.tasks.nobody_defines_this", "alice",
                          password="tb-poison-4a8d")

    wait_for(lambda: DeadLetter.objects.filter(task_id__in=[failed, poison]).count() == 2,
             what="both to be dead-lettered")
    lines = wait_for(lambda: [
        record for record in records(log)
        if (failed in record["message"] and "login failed for" in record["message"])
        or "nobody_defines_this" in record["message"]] or None,
        what="Celery to log the failure and the poison message")
    wait_for(lambda: "The full contents of the message body was" in log.read_text(),
             what="the poison message's body to be logged")
    text = log.read_text()
    for secret in ("tb-positional-1c9e", "tb-session-7f3b", "tb-poison-4a8d"):
        assert secret not in text, secret
    assert "[redacted]" in text
    assert lines


def test_a_value_logged_cannot_start_a_line_of_its_own():
    """A newline in a value a line was given (a producer's task id in Celery's "Task
    name[id] received") started a forged line in the plain format. The message's own
    newlines and a traceback's stay."""
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        failure = sys.exc_info()
    record = logging.LogRecord(
        "celery.worker.strategy", logging.INFO, __file__, 1,
        "Task %(name)s[%(id)s] received\nthe message's own line",
        ({"name": "t", "id": "x\n2026-12-04 ERROR forged"},), failure)

    TaskContextFilter().filter(record)
    lines = logging.Formatter("%(message)s").format(record).splitlines()

    assert lines[:2] == ["Task t[x\\n2026-12-04 ERROR forged] received",
                         "the message's own line"]
    assert lines[-2:] == ["ValueError: first", "second"]
