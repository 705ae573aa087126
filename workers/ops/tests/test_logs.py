"""JSON logs with task context, and a correlation id from the request through every task."""

import json

import pytest

from tests.factories import CustomerFactory, invoice_event, post_event
from tests.fixtures import PRIVATE_BROKER, publish_task, wait_for
from workers.api.headers import CORRELATION_HEADER
from workers.api.models import OutboxMessage


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
