"""Invariants every registered task must keep: a route, time limits, a safe redelivery window."""

import re

import pytest
from django.conf import settings

from config.celery import app
from tests.fixtures import ROOT, project_tasks
from workers.core.exceptions import UnroutedTaskError
from workers.core.routing import (
    DEAD_LETTER,
    QUEUES,
    dead_letter_queue,
    declared_queues,
    queue_for,
)


def test_every_registered_task_has_an_explicit_route():
    for task in project_tasks():
        route = app.amqp.router.route({}, task.name)
        assert route["queue"].name in QUEUES, task.name


def test_an_unrouted_task_fails_at_enqueue_with_a_clear_error():
    with pytest.raises(UnroutedTaskError, match=r"declares no queue: give its decorator route="):
        queue_for("apps.nowhere.tasks.lost")
    with pytest.raises(UnroutedTaskError):
        app.send_task("apps.nowhere.tasks.lost")


def test_every_project_task_declares_its_queue_where_it_is_defined():
    for task in project_tasks():
        if not task.name.startswith("celery."):
            assert task.route in QUEUES, task.name


def test_every_task_has_a_soft_limit_below_its_hard_limit():
    for task in project_tasks():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        assert soft, task.name
        assert hard, task.name
        assert soft < hard, task.name


def test_visibility_timeout_exceeds_every_hard_limit_plus_the_longest_delay():
    """Otherwise Redis hands a still-running or still-waiting task to a second worker."""
    visibility = settings.BROKER_VISIBILITY_TIMEOUT
    for task in project_tasks():
        hard = task.time_limit or app.conf.task_time_limit
        longest_delay = max(settings.TASK_MAX_COUNTDOWN, task.retry_backoff_max or 0,
                            task.default_retry_delay or 0)
        assert hard + longest_delay < visibility, task.name


def test_rabbitmq_consumer_timeout_exceeds_every_hard_limit():
    """Otherwise RabbitMQ closes the channel of a worker still running a task and hands the
    message to another: it runs twice. (Countdowns wait in the broker's delay queues, not
    in a worker, on RabbitMQ.) The broker's own setting must say the same."""
    for task in project_tasks():
        hard = task.time_limit or app.conf.task_time_limit
        assert hard < settings.BROKER_CONSUMER_TIMEOUT, task.name
    conf = (ROOT / "docker" / "rabbitmq" / "rabbitmq.conf").read_text()
    configured = re.search(r"^consumer_timeout\s*=\s*(\d+)$", conf, re.MULTILINE)
    assert configured, "docker/rabbitmq/rabbitmq.conf sets no consumer_timeout"
    assert int(configured[1]) == settings.BROKER_CONSUMER_TIMEOUT * 1000


def test_the_shipped_rabbitmq_conf_handles_partitions_as_the_cluster_tests_do():
    from tests.faults.servers import PrivateRabbitMQCluster

    conf = (ROOT / "docker" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert PrivateRabbitMQCluster.CONFIG.strip() in conf.splitlines()


def test_rabbitmq_queues_are_quorum_queues_that_dead_letter_at_the_delivery_cap():
    for queue in declared_queues(rabbitmq=True, delivery_limit=settings.TASK_MAX_DELIVERIES):
        arguments = queue.queue_arguments
        assert arguments["x-queue-type"] == "quorum", queue.name
        assert arguments["x-delivery-limit"] == settings.TASK_MAX_DELIVERIES
        assert (arguments["x-dead-letter-exchange"], arguments["x-dead-letter-routing-key"]) \
            == (DEAD_LETTER, DEAD_LETTER)
        # at-least-once dead-lettering works only with reject-publish overflow
        assert arguments["x-dead-letter-strategy"] == "at-least-once"
        assert arguments["x-overflow"] == "reject-publish"
        assert queue.exchange.type == "topic", "native delayed delivery needs topic exchanges"
    assert dead_letter_queue().queue_arguments == {"x-queue-type": "quorum"}


def test_a_countdown_beyond_the_safe_window_is_refused_before_publishing():
    task = app.tasks["workers.tasks.dead_letter_drill"]
    with pytest.raises(ValueError, match="TASK_MAX_COUNTDOWN"):
        task.apply_async(args=["x"], countdown=settings.TASK_MAX_COUNTDOWN + 1)


@pytest.mark.parametrize("task_id", [12, "", "job\ud800", ["job"]])
def test_a_task_id_the_workers_would_refuse_is_refused_before_publishing(task_id):
    """Workers dead-letter such a message unrun (workers/runtime/request.py); the caller
    hears of it at once instead."""
    task = app.tasks["workers.tasks.dead_letter_drill"]
    with pytest.raises(ValueError, match="non-empty text UTF-8 can carry"):
        task.apply_async(args=["x"], task_id=task_id)


def test_only_json_is_accepted_anywhere():
    conf = app.conf
    assert conf.accept_content == ["json"]
    assert conf.result_accept_content == ["json"]
    assert conf.task_serializer == conf.result_serializer == conf.event_serializer == "json"


def test_reliability_defaults():
    conf = app.conf
    assert conf.task_acks_late
    assert conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_create_missing_queues is False
    assert conf.broker_connection_retry_on_startup is True
    assert conf.worker_send_task_events
    assert not conf.task_send_sent_event  # a second publish per enqueue; see settings
    assert conf.task_ignore_result is True
    assert conf.worker_max_tasks_per_child
    assert conf.worker_max_memory_per_child


@pytest.mark.broker
def test_a_replay_is_noted_with_its_ack_only_where_the_ack_can_carry_it():
    """The main process notes a successful replay with its ack on the platform's Redis
    (workers/runtime/request.py); the pool process notes it everywhere else: on RabbitMQ,
    for a task acknowledged before it runs, or for a task with a request class of its own
    (whose acks do not carry the note). A note nobody writes leaves the row "requeued"."""
    from celery.worker.request import Request

    from workers.runtime.request import replay_noted_with_ack

    task = app.tasks["tests.tasks.log_line"]
    on_redis = not settings.BROKER_IS_RABBITMQ
    assert replay_noted_with_ack(task) is on_redis
    early = type("Early", (), {"acks_late": False, "Request": task.Request})
    assert not replay_noted_with_ack(early)
    own = type("Own", (), {"acks_late": True, "Request": Request})
    assert not replay_noted_with_ack(own)
