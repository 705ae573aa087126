"""Django's standard task API on the platform: functions of tests/standard_tasks.py, a
module the workers never imported at start, run by real workers (on both brokers)."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
import redis
from celery.signals import before_task_publish
from celery.utils import uuid
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.celery import app
from tests import standard_tasks
from tests.fixtures import FINISHED, HANG, PRIVATE_BROKER, ROOT, wait_for
from tests.ledger.models import Effect
from tests.tasks import store
from workers.core.models import OutboxMessage
from workers.core.redaction import payload_html
from workers.core.standard_tasks import (
    InvalidTaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from workers.core.task_backend import RUNNER
from workers.core.task_results import KEY
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.services import dead_letters_requeue


def finished(result: TaskResult) -> TaskResult:
    """The result once its run finished for good, read as another process would."""
    def read() -> TaskResult | None:
        now = result.task.get_result(result.id)
        return now if now.is_finished else None
    return wait_for(read, what=f"{result.task.name}[{result.id}] to finish")  # type: ignore[return-value]


def runs(key: str) -> int:
    return int(store().get(f"test:runs:{key}") or 0)


def test_an_enqueue_runs_once_and_get_result_follows_it_from_running_to_its_value(
        live_workers):
    key = f"held-{uuid()}"
    shadows: dict[str, str] = {}

    def shadow(headers=None, **_):
        shadows[headers["id"]] = headers.get("shadow")

    before_task_publish.connect(shadow)
    try:
        result = standard_tasks.held.enqueue(key)
    finally:
        before_task_publish.disconnect(shadow)
    assert shadows[result.id] == "tests.standard_tasks.held"  # what logs and Flower show
    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at is not None

    running = wait_for(lambda: (now := standard_tasks.held.get_result(result.id)).status
                       == TaskResultStatus.RUNNING and now, what="the run to start")
    assert running.started_at >= running.enqueued_at
    assert running.worker_ids == ["critical@test"]
    store().set(f"test:release:{key}", 1)

    done = finished(result)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == key
    assert done.finished_at >= done.started_at
    assert done.attempts == 1
    assert not done.errors
    assert task_backends["default"].get_result(result.id).args == [key]


def test_a_rolled_back_transaction_runs_nothing_and_a_committed_one_runs_once(live_workers):
    lost, kept = f"rolled-back-{uuid()}", f"committed-{uuid()}"
    doomed: list[TaskResult] = []

    def failing_service() -> None:
        with transaction.atomic():
            doomed.append(standard_tasks.record.enqueue(lost))
            raise RuntimeError("the service failed after enqueueing")

    with pytest.raises(RuntimeError):
        failing_service()
    priorities = {}

    def priority(headers=None, properties=None, **_):
        priorities[headers["id"]] = properties.get("priority")

    before_task_publish.connect(priority)
    try:
        with transaction.atomic():
            result = standard_tasks.record.using(priority=100).enqueue(kept,
                                                                       note="through the outbox")
            assert OutboxMessage.objects.filter(task_id=result.id).exists()
    finally:
        before_task_publish.disconnect(priority)

    assert finished(result).return_value == {"key": kept, "note": "through the outbox"}
    row = OutboxMessage.objects.get(task_id=result.id)
    assert row.headers["shadow"] == "tests.standard_tasks.record"  # what logs and Flower show
    assert priorities[result.id] == row.priority == 9  # the highest on both brokers
    # The outbox may publish a row twice (a crash before it marks it): the run is once.
    app.send_task(RUNNER, kwargs=row.kwargs, task_id=row.task_id, queue=row.queue)
    wait_for(lambda: int(store().hget(FINISHED, result.id) or 0) >= 2,
             what="the second delivery to be handled")
    assert Effect.objects.filter(key=kept).count() == 1
    assert runs(kept) == 1
    with pytest.raises(TaskResultDoesNotExist):
        standard_tasks.record.get_result(doomed[0].id)
    assert not OutboxMessage.objects.filter(task_id=doomed[0].id).exists()
    assert not Effect.objects.filter(key=lost).exists()


def test_a_transient_error_is_retried_and_the_context_counts_the_attempts(live_workers):
    result = standard_tasks.flaky_once.enqueue(key=f"flaky-{uuid()}")

    done = finished(result)

    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == 2
    assert done.attempts == 2
    [error] = done.errors
    assert error.exception_class_path == "workers.core.exceptions.TransientError"
    assert "the gateway timed out" in error.traceback


def test_a_failure_is_a_redacted_dead_letter_that_redrives(live_workers):
    key = f"broken-{uuid()}"
    result = standard_tasks.broken.enqueue(key, "hunter2")

    failed = finished(result)

    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[-1].exception_class_path == "workers.core.exceptions.PermanentError"
    row = wait_for(lambda: DeadLetter.objects.filter(task_id=result.id).first(),
                   what="the dead letter")
    assert row.task_name == RUNNER
    assert row.kwargs == {"task_path": "tests.standard_tasks.broken",
                          "call": {"key": key, "password": "hunter2"}}  # exact, for replay
    assert "hunter2" not in payload_html(task_name=row.task_name, args=row.args,
                                         kwargs=row.kwargs)

    store().set(f"test:fixed:{key}", 1)
    outcome = dead_letters_requeue(dead_letter_ids=[row.pk], actor="operator")
    assert list(outcome.requeued) == [row.pk]
    row.refresh_from_db()
    replay = wait_for(lambda: (r := task_backends["default"].get_result(row.replay_task_id))
                      .is_finished and r, what="the replay to finish")
    assert replay.status == TaskResultStatus.SUCCESSFUL
    assert runs(key) == 2
    wait_for(lambda: DeadLetter.objects.get(pk=row.pk).status == DeadLetter.Status.RESOLVED,
             what="the dead letter to be resolved by its replay")


def test_run_after_holds_the_run_until_then(live_workers):
    key = f"later-{uuid()}"
    run_after = timezone.now() + timedelta(seconds=4)
    result = standard_tasks.in_bulk.using(run_after=run_after).enqueue(key)

    done = finished(result)

    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.started_at >= run_after


def test_the_signals_come_at_enqueue_start_and_finish(live_workers):
    seen: list[tuple[str, str]] = []

    def on_enqueued(sender, task_result, **_):
        seen.append(("enqueued", task_result.status))

    task_enqueued.connect(on_enqueued)
    try:
        result = standard_tasks.in_bulk.enqueue(f"signals-{uuid()}")
    finally:
        task_enqueued.disconnect(on_enqueued)
    assert seen == [("enqueued", TaskResultStatus.READY)]
    assert finished(result).status == TaskResultStatus.SUCCESSFUL


@pytest.mark.django_db
def test_the_worker_sends_started_and_finished_with_the_result_of_the_moment(test_redis):
    """The worker side of the signals, run in this process (no broker)."""
    from workers.core.task_backend import standard_task_run

    seen: list[tuple[str, str]] = []

    def on_started(sender, task_result, **_):
        seen.append(("started", task_result.status))

    def on_finished(sender, task_result, **_):
        seen.append(("finished", task_result.status))

    task_started.connect(on_started)
    task_finished.connect(on_finished)
    try:
        standard_task_run(result_id=uuid(), task_path="tests.standard_tasks.in_bulk",
                          call={"key": f"local-{uuid()}"}, worker_id="here",
                          will_retry=lambda error: False)
    finally:
        task_started.disconnect(on_started)
        task_finished.disconnect(on_finished)
    assert seen == [("started", TaskResultStatus.RUNNING),
                    ("finished", TaskResultStatus.SUCCESSFUL)]


@pytest.mark.django_db
def test_what_cannot_run_is_refused_at_definition_or_enqueue(test_redis):
    def orphan(key: str) -> None: ...

    def results() -> set[str]:
        return set(store().scan_iter(KEY.format(id="*")))

    before = results()
    orphan.__qualname__ = "orphan"  # module-level in name, as a decorator would see it
    with pytest.raises(InvalidTaskError, match="not valid"):
        task(queue_name="default")(orphan)
    with pytest.raises(InvalidTaskError, match="priority"):
        task(queue_name="bulk", priority=101)(orphan)
    with pytest.raises(InvalidTaskError, match="TASK_MAX_COUNTDOWN"):
        standard_tasks.in_bulk.using(run_after=timezone.now() + timedelta(days=2)).enqueue("x")
    with pytest.raises(InvalidTaskError, match="argument"):
        standard_tasks.in_bulk.enqueue("x", "y")
    with pytest.raises((TypeError, ValueError)):
        standard_tasks.in_bulk.enqueue(object())
    with pytest.raises(TaskResultDoesNotExist):
        standard_tasks.in_bulk.get_result("never-enqueued")
    assert results() == before
    assert not OutboxMessage.objects.exists()


def test_the_api_comes_from_the_backport_before_django_6():
    """The import path this Django can run (Django 6's is taken once the project moves)."""
    import django
    import django_tasks

    from workers.core import standard_tasks as api

    assert django.VERSION < (6, 0)
    assert api.SOURCE == "django_tasks"
    assert api.task is django_tasks.task
    assert api.task_backends["default"].__class__.__name__ == "PlatformTaskBackend"


def test_a_backend_naming_a_queue_no_worker_reads_fails_the_system_check(settings):
    from django.core import checks

    settings.TASKS = {"default": {"BACKEND": "workers.core.task_backend.PlatformTaskBackend",
                                  "QUEUES": ["critical", "emails"]}}
    errors = [message for message in checks.run_checks() if message.id == "workers.E010"]
    assert errors
    assert "emails" in errors[0].msg


@pytest.mark.django_db
def test_a_message_naming_a_path_outside_the_apps_imports_nothing_and_runs_nothing(
        test_redis):
    """Whoever can publish names the path: importing a module runs it."""
    import sys

    from workers.core.task_backend import UnknownStandardTask, standard_task_run

    assert "antigravity" not in sys.modules
    for path, reason in (("antigravity.fly", "not in the project or an installed app"),
                         ("os.system", "is not a task"),
                         ("tests.standard_tasks.nothing_here", "cannot be imported")):
        with pytest.raises(UnknownStandardTask, match=reason):
            standard_task_run(result_id=uuid(), task_path=path, call={"command": "true"},
                              worker_id="here", will_retry=lambda error: False)
    assert "antigravity" not in sys.modules


def test_a_forged_message_becomes_a_dead_letter(live_workers):
    forged = app.send_task(RUNNER, kwargs={"task_path": "os.system", "call": {"command": "id"}},
                           queue="critical")
    row = wait_for(lambda: DeadLetter.objects.filter(task_id=forged.id).first(),
                   what="the forged message's dead letter")
    assert row.exception_type == "workers.core.task_backend.UnknownStandardTask"


def test_the_runner_is_registered_under_the_name_the_backend_sends():
    from workers.core.tasks import run_standard_task

    assert run_standard_task.name == RUNNER


def test_a_call_is_named_by_the_signature_and_undone_exactly():
    from workers.core.task_backend import named_call, positional_call

    call = named_call(standard_tasks.record, ["k"], {"note": "n"})
    assert call == {"key": "k", "note": "n"}
    assert positional_call(standard_tasks.record, call) == (("k",), {"note": "n"})
    context_call = named_call(standard_tasks.flaky_once, ["k"], {})  # the context is not named
    assert context_call == {"key": "k"}
    with pytest.raises(TypeError, match="no argument named pasword"):
        positional_call(standard_tasks.broken, {"key": "k", "pasword": "x"})


def test_a_dead_letter_edit_is_checked_against_the_function_it_carries():
    from workers.dead_letters.rules import call_refusal

    def refusal(message: dict) -> str:
        return call_refusal(RUNNER, [], message)

    path = "tests.standard_tasks.broken"
    assert refusal({"task_path": path, "call": {"key": "k", "password": "p"}}) == ""
    assert "missing a required argument: 'password'" in refusal(
        {"task_path": path, "call": {"key": "k"}})
    assert "no argument named user" in refusal(
        {"task_path": path, "call": {"key": "k", "password": "p", "user": "u"}})
    assert "is not a task" in refusal({"task_path": "os.system", "call": {}})
    assert "is not in the project or an installed app" in refusal(
        {"task_path": "antigravity.x", "call": {}})
    assert "is not in the project or an installed app" in refusal(
        {"task_path": "django.contrib.gis.gdal.libgdal.lgdal", "call": {}})
    assert "task_path" in refusal({"task_path": path, "call": ["k", "p"]})


@pytest.mark.django_db
def test_the_result_of_a_function_since_removed_does_not_exist_rather_than_crash(test_redis):
    from workers.core.task_results import ResultRecord, result_save

    gone = uuid()
    result_save(result_id=gone, record=ResultRecord(
        task_path="tests.standard_tasks.renamed_since", args=[], kwargs={}, status="FAILED"))
    with pytest.raises(TaskResultDoesNotExist, match="renamed_since"):
        task_backends["default"].get_result(gone)


def test_metrics_name_the_function_not_the_runner(live_workers):
    from workers.runtime.metric_store import parse_field, read_hosts

    def started() -> float:
        return sum(amount for series in read_hosts().values()
                   for raw, amount in series.items()
                   if parse_field(raw)[0] == "celery_task_started"
                   and parse_field(raw)[1][0] == "tests.standard_tasks.in_bulk")

    before = started()
    finished(standard_tasks.in_bulk.enqueue(f"metrics-{uuid()}"))
    wait_for(lambda: started() > before, what="the run counted under the function's name")


@pytest.mark.django_db
def test_two_functions_failing_alike_are_two_causes():
    from workers.dead_letters.services import dead_letter_store

    rows = [dead_letter_store(fields={
        "task_id": uuid(), "task_name": RUNNER, "queue": "critical", "args": [],
        "kwargs": {"task_path": path, "call": {}}, "exception_type": "builtins.ValueError",
        "message": "after write", "traceback": ""})
        for path in ("tests.standard_tasks.record", "tests.standard_tasks.in_bulk")]
    assert rows[0].fingerprint != rows[1].fingerprint


#: Django priorities, enqueued in this order onto a queue no worker reads yet.
BACKLOG = [0, 10, -5, 50, 100, 0, 40, 90]


def rabbitmq_version() -> tuple[int, ...]:
    with app.connection_for_read() as connection:
        connection.connect()
        version = connection.connection.server_properties["version"]  # type: ignore[attr-defined]
    return tuple(int(part) for part in str(version).split(".")[:2])


@pytest.mark.broker
def test_a_backlog_runs_in_priority_order(celery_process, private_fleet_env, process_env):
    """Enqueued from a process of its own, run by a one-child worker started afterwards."""
    if settings.BROKER_IS_RABBITMQ and rabbitmq_version() < (4, 0):
        pytest.skip("the quorum queues of RabbitMQ before 4.0 have no priorities")
    key = uuid()
    enqueue = ("from tests.standard_tasks import in_line\n"
               f"for n, priority in enumerate({BACKLOG}):\n"
               f"    in_line.using(priority=priority).enqueue({key!r}, n)\n")
    sent = subprocess.run([sys.executable, "manage.py", "shell", "-c", enqueue], cwd=ROOT,
                          env=process_env | private_fleet_env, capture_output=True, text=True,
                          timeout=HANG, check=False)
    assert sent.returncode == 0, sent.stderr
    celery_process("worker", **private_fleet_env)
    order = redis.Redis.from_url(PRIVATE_BROKER, decode_responses=True)
    wait_for(lambda: order.llen(f"test:order:{key}") == len(BACKLOG), what="every run")
    ran = [int(n) for n in order.lrange(f"test:order:{key}", 0, -1)]
    if settings.BROKER_IS_RABBITMQ:  # two levels: a priority above the default, or none
        assert ran == [1, 3, 4, 6, 7, 0, 2, 5]
    else:  # 100 and 90, then 50 and 40, then 10, then the default and below, in order
        assert ran == [4, 7, 3, 6, 1, 0, 2, 5]


@pytest.mark.django_db
def test_the_enqueue_write_leaves_a_quicker_worker_s_record_and_goes_with_a_failed_publish(
        test_redis):
    from workers.core.task_results import (
        RUNNING,
        result_enqueued,
        result_enqueued_while_publishing,
        result_load,
        result_started,
    )

    quick, failed = uuid(), uuid()
    call = {"task_path": "tests.standard_tasks.in_bulk", "args": ["x"], "kwargs": {}}
    result_started(result_id=quick, worker_id="bulk@test", **call)
    result_enqueued(result_id=quick, at=None, **call)  # its publish was slower than the run
    assert result_load(result_id=quick).status == RUNNING

    with pytest.raises(ConnectionError), \
            result_enqueued_while_publishing(result_id=failed, at=None, **call):
        raise ConnectionError("the broker went away")
    assert result_load(result_id=failed) is None


@pytest.mark.django_db
def test_a_success_whose_late_write_failed_is_written_again(test_redis, monkeypatch):
    """Redis went away between two jobs under the late-write connection: the success whose
    answer was not read yet, and the next one, are both written through the pool."""
    from workers.core import task_results

    earlier, next_one = uuid(), uuid()
    for result_id in (earlier, next_one):
        task_results.result_enqueued(result_id=result_id, task_path="tests.standard_tasks.in_bulk",
                                     args=["x"], kwargs={}, at=None)
        task_results.result_started(result_id=result_id, task_path="tests.standard_tasks.in_bulk",
                                    args=["x"], kwargs={}, worker_id="bulk@test")
    gone = task_results.redis_client().connection_pool.make_connection()
    gone.send_command("CLIENT", "ID")
    test_redis.client_kill_filter(_id=gone.read_response())
    monkeypatch.setattr(task_results._late, "connection", gone)
    monkeypatch.setattr(task_results._late, "pid", os.getpid())
    monkeypatch.setattr(task_results._late, "unread", (earlier, {"status": "SUCCESSFUL"}))

    record = task_results.result_load(result_id=next_one)
    task_results.result_finished(result_id=next_one, record=record, status="SUCCESSFUL",
                                 return_value="x")
    assert task_results.result_load(result_id=earlier).status == "SUCCESSFUL"
    assert task_results.result_load(result_id=next_one).return_value == "x"
