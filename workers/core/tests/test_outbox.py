"""The outbox: a job exists iff its transaction commits, is published after it, swept if not."""

import threading
from datetime import timedelta

import pytest
from celery.utils import uuid
from django.core.management import CommandError, call_command
from django.db import DataError, transaction
from django.db import OperationalError as DjangoOperationalError
from django.utils import timezone
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fixtures import wait_for
from tests.ledger.models import Effect
from tests.tasks import FINISHED, record_effect
from workers.core.headers import ROW_OWN_HEADERS
from workers.core.models import OutboxMessage
from workers.core.outbox import outbox_enqueue, outbox_enqueue_many, outbox_sweep
from workers.ops.tasks import probe


def enqueue_effect(key: str) -> OutboxMessage:
    return outbox_enqueue(task_name=record_effect.name, kwargs={"key": key}, queue="critical",
                          task_id=key)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_no_job(test_redis):
    def failing_service():
        with transaction.atomic():
            enqueue_effect("rolled-back")
            raise RuntimeError("the service failed after enqueueing")

    with pytest.raises(RuntimeError):
        failing_service()

    assert not OutboxMessage.objects.exists()


def test_a_committed_job_is_published_after_commit_and_runs(live_workers):
    with transaction.atomic():
        rows = [enqueue_effect(f"outbox-{n}") for n in range(3)]

    wait_for(lambda: Effect.objects.filter(key__startswith="outbox-").count() == 3,
             what="the three jobs")
    published = OutboxMessage.objects.filter(pk__in=[row.pk for row in rows])
    assert all(row.published_at for row in published)


def test_publishing_a_row_twice_runs_its_effects_once(live_workers, test_redis):
    with transaction.atomic():
        row = enqueue_effect("published-twice")
    wait_for(lambda: test_redis.hget(FINISHED, row.task_id), what="the first run")
    OutboxMessage.objects.filter(pk=row.pk).update(published_at=None)  # as if never marked

    assert outbox_sweep(now=timezone.now() + timedelta(minutes=1)) == 1
    wait_for(lambda: test_redis.hget(FINISHED, row.task_id) == "2", what="the second delivery")
    assert Effect.objects.filter(key="published-twice").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_skips_rows_another_publisher_holds(test_redis):
    with transaction.atomic():
        enqueue_effect("held")
    OutboxMessage.objects.update(published_at=None)
    holding, release = threading.Event(), threading.Event()

    def other_publisher():
        with transaction.atomic():
            list(OutboxMessage.objects.select_for_update())
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=other_publisher)
    thread.start()
    holding.wait(10)
    later = timezone.now() + timedelta(minutes=1)
    try:
        assert outbox_sweep(now=later) == 0  # skipped, not waited for
    finally:
        release.set()
        thread.join()
    assert outbox_sweep(now=later) == 1


@pytest.mark.django_db(transaction=True)
def test_a_row_no_message_can_be_built_from_keeps_its_error_and_the_others_go(test_redis,
                                                                             caplog):
    """A job for a queue a deploy removed: it raised out of the sweeper's batch, which rolled
    the claim back, and the same batch failed on every sweep with the good rows in it."""
    with transaction.atomic():
        enqueue_effect("before-the-gone-one")
        OutboxMessage.objects.create(task_id="gone-queue", task_name=record_effect.name,
                                     queue="removed-in-a-deploy", kwargs={"key": "gone"})
        enqueue_effect("after-the-gone-one")
    OutboxMessage.objects.update(published_at=None)  # all three left to the sweeper

    assert outbox_sweep(now=timezone.now() + timedelta(minutes=1)) == 2
    gone = OutboxMessage.objects.get(task_id="gone-queue")
    assert (gone.published_at, gone.publish_attempts) == (None, 1)
    assert "removed-in-a-deploy" in gone.last_error
    assert OutboxMessage.objects.filter(published_at__isnull=False).count() == 2
    assert "cannot be published, kept with its error" in caplog.text
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(CommandError, match="although the broker answers: each keeps its "
                                           "reason in its last error"):
        call_command("outbox", "sweep")  # not sent to look for a broker that is up


@pytest.mark.django_db
def test_a_job_for_a_queue_no_worker_is_declared_for_is_refused_at_the_enqueue():
    with pytest.raises(ValueError, match="no queue named 'nowhere'"), transaction.atomic():
        outbox_enqueue(task_name=record_effect.name, queue="nowhere")
    assert not OutboxMessage.objects.exists()


def test_only_effect_once_or_idempotent_tasks_may_use_the_outbox():
    with pytest.raises(TypeError, match="neither effect_once nor idempotent"):
        probe.delay_via_outbox(0.0)


@pytest.mark.django_db(transaction=True)
def test_a_database_error_while_publishing_after_commit_leaves_the_job_to_the_sweeper(
        monkeypatch, caplog):
    """The caller's work is committed: a failed publish must not fail it (a webhook whose
    event is stored would answer 500 and be sent again)."""
    def locked(rows, *, mark):
        raise DjangoOperationalError("database is locked")

    monkeypatch.setattr("workers.core.outbox._publish", locked)
    with transaction.atomic():
        row = enqueue_effect("publish-failed")

    assert OutboxMessage.objects.get(pk=row.pk).published_at is None
    assert "left for the sweeper, database error while publishing after commit" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_only_jobs_whose_transaction_committed_are_published(monkeypatch):
    """A rolled-back savepoint's job, and a rolled-back transaction's, are never sent, not
    even by the next commit of the same thread."""
    sent = []
    def published(rows, *, mark):
        sent.extend(row.task_id for row in rows)
        return len(rows), []

    monkeypatch.setattr("workers.core.outbox._publish", published)
    def fails_after_enqueueing(key: str) -> None:
        with transaction.atomic():
            enqueue_effect(key)
            raise RuntimeError(f"{key}: the step failed")

    with pytest.raises(RuntimeError):
        fails_after_enqueueing("rolled-back")
    with transaction.atomic():
        enqueue_effect("kept")
        with pytest.raises(RuntimeError):
            fails_after_enqueueing("savepoint-rolled-back")
        enqueue_effect("kept-too")

    assert sent == ["kept", "kept-too"]


JSON_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
                    max_size=20)  # what jsonb can hold
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | JSON_TEXT
    | st.floats(-1e15, 1e15),  # beyond, jsonb writes a whole float as an integer
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=12)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None)
@given(args=st.lists(JSON_VALUES, max_size=4), kwargs=st.dictionaries(JSON_TEXT, JSON_VALUES,
                                                                        max_size=4),
       priority=st.none() | st.integers(0, 9), later=st.booleans(), jobs=st.integers(1, 3))
def test_a_job_is_stored_as_the_orm_reads_it_back(args, kwargs, priority, later, jobs):
    """The outbox's raw INSERT keeps every field exactly (the rows are published from
    what it wrote: a sweeper reads them back through the ORM), one job (a row's VALUES)
    or several (a JSON document of rows)."""
    eta = timezone.now() + timedelta(minutes=5) if later else None
    with transaction.atomic():
        written = outbox_enqueue_many(jobs=[OutboxMessage(
            task_id=uuid(), task_name="tests.tasks.record_effect", args=args, kwargs=kwargs,
            queue="bulk", headers={"x-note": "é😀"}, eta=eta, priority=priority)
            for _ in range(jobs)])
        stored = {row.pk: row for row in OutboxMessage.objects.all()}
        transaction.set_rollback(True)  # nothing is published
    assert sorted(stored) == sorted(job.pk for job in written)
    for job in written:
        row = stored[job.pk]
        assert (row.task_id, row.task_name, row.queue) == (job.task_id, job.task_name, "bulk")
        assert (row.args, row.kwargs, row.headers) == (args, kwargs, {"x-note": "é😀"})
        assert (row.eta, row.priority, row.published_at) == (eta, priority, None)
        assert row.created_at == job.created_at


def _seen_by_another_session(sql: str) -> tuple:
    from django.db import connections

    other = connections["default"].copy("observer")
    try:
        with other.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_job_enqueued_outside_a_transaction_is_committed_at_once(monkeypatch):
    """The one-job INSERT goes past psycopg (workers/core/one_round_trip.py): in autocommit
    it must not open a transaction psycopg knows nothing of, which nobody would commit."""
    from django.db import connection

    monkeypatch.setattr("workers.core.outbox._publish", lambda rows, *, mark: (len(rows), []))
    job = enqueue_effect("autocommitted")

    assert connection.connection.info.transaction_status.name == "IDLE"
    assert _seen_by_another_session(
        f"SELECT task_id FROM workers_outboxmessage WHERE id = {int(job.pk)}") == (
        "autocommitted",)


@pytest.mark.django_db(transaction=True)
def test_a_job_that_opens_the_transaction_commits_with_what_follows(monkeypatch):
    """Sent first in its transaction, the job's INSERT carries the BEGIN: psycopg must see
    the transaction open (no second BEGIN, which PostgreSQL would answer with a warning)
    and Django's commit must commit the job with the writes after it."""
    from django.db import connection

    monkeypatch.setattr("workers.core.outbox._publish", lambda rows, *, mark: (len(rows), []))
    connection.ensure_connection()
    notices = []
    connection.connection.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    with transaction.atomic():
        job = enqueue_effect("opens-the-transaction")
        Effect.objects.create(key="after-the-job")

    assert notices == []
    assert connection.connection.info.transaction_status.name == "IDLE"
    assert _seen_by_another_session(
        "SELECT count(*) FROM workers_outboxmessage o, ledger_effect e "
        f"WHERE o.id = {int(job.pk)} AND e.key = 'after-the-job' AND o.xmin = e.xmin") == (1,)


@pytest.mark.django_db
@settings(max_examples=100, deadline=None)
@example(task_id="a\x00b", jobs=1)  # always the refusals, besides what hypothesis draws
@example(task_id="a\x00b", jobs=2)
@example(task_id="a\ud800b", jobs=1)
@example(task_id="a\ud800b", jobs=2)
@example(task_id="'); DROP TABLE workers_outboxmessage; --$$\\", jobs=1)
@example(task_id="'); DROP TABLE workers_outboxmessage; --$$\\", jobs=2)
@given(task_id=st.text(min_size=1, max_size=255), jobs=st.integers(1, 2))
def test_a_job_id_of_any_text_is_stored_as_written_or_refused_with_nothing_stored(task_id,
                                                                                  jobs):
    """The one-job INSERT quotes its values itself, a batch's goes as a JSON document: any
    text is stored as it is; a NUL, which libpq's quoting would cut the id at, is refused
    as the ORM refuses it, and so is a lone surrogate, which UTF-8 cannot carry, each with
    nothing stored (the batch's other job neither)."""
    batch = [OutboxMessage(task_id=task_id if n == 0 else f"{task_id[:200]}-{n}",
                           task_name=record_effect.name, queue="bulk") for n in range(jobs)]
    with transaction.atomic():
        if "\x00" in task_id or any("\ud800" <= c <= "\udfff" for c in task_id):
            with pytest.raises(DataError, match=r"NUL|UTF-8|Unicode|surrogate"), \
                    transaction.atomic():
                outbox_enqueue_many(jobs=batch)
            assert not OutboxMessage.objects.exists()
        else:
            written = outbox_enqueue_many(jobs=batch)
            assert sorted(OutboxMessage.objects.values_list("pk", "task_id")) == sorted(
                (job.pk, job.task_id) for job in written)
            assert written[0].task_id == task_id
        transaction.set_rollback(True)  # nothing is published


@pytest.mark.django_db
@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("task_id", ["S" * 255 + "   ", "S" * 300])
def test_a_job_id_longer_than_the_table_holds_is_refused_not_cut(task_id, jobs):
    """PostgreSQL stores a varchar value too long only by trailing spaces cut to the
    length: the row's id would differ from the one published from memory after the
    commit, and the batch INSERT then failed to match its ids back (a KeyError, with the
    rows written)."""
    batch = [OutboxMessage(task_id=task_id if n == 0 else f"fits-{n}",
                           task_name=record_effect.name, queue="bulk") for n in range(jobs)]
    with pytest.raises(DataError, match="longer than the 255"), transaction.atomic():
        outbox_enqueue_many(jobs=batch)
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db
@settings(max_examples=60, deadline=None)
@given(header=st.sampled_from(sorted(ROW_OWN_HEADERS)) | st.text(max_size=12),
       queue=st.sampled_from(["bulk", "critical", "nosuchqueue", ""]),
       task_id=st.sampled_from(["", "job-1", None, 7]), jobs=st.integers(1, 3))
@example(header="x-\x00", queue="bulk", task_id="job-1", jobs=1)
@example(header="x-\x00", queue="bulk", task_id="job-1", jobs=2)
def test_a_batch_no_message_could_be_built_from_is_refused_with_nothing_stored(
        header, queue, task_id, jobs):
    """A job the publisher could never send as written waits in the outbox for good, so
    it is refused when written: an undeclared queue, an empty or non-text task id, a
    header that would replace what Celery writes (the task, its id, the shown call). A
    header name PostgreSQL cannot store (a NUL) is its DataError, nothing stored."""
    batch = [OutboxMessage(task_id=task_id if n == 0 else f"job-{n + 1}",
                           task_name=record_effect.name, queue=queue,
                           headers={header: "x"}) for n in range(jobs)]
    unpublishable = (queue not in ("bulk", "critical") or task_id in ("", None, 7)
                     or header in ROW_OWN_HEADERS)
    with transaction.atomic():
        if unpublishable:
            with pytest.raises(ValueError, match=r"queue|task id|headers"):
                outbox_enqueue_many(jobs=batch)
            assert not OutboxMessage.objects.exists()
        elif "\x00" in header:
            with pytest.raises(DataError), transaction.atomic():
                outbox_enqueue_many(jobs=batch)
            assert not OutboxMessage.objects.exists()
        else:
            outbox_enqueue_many(jobs=batch)
            assert OutboxMessage.objects.count() == jobs
        transaction.set_rollback(True)  # nothing is published
