"""Real workers, real PostgreSQL: a failure carrying NUL (which PostgreSQL refuses in text
and jsonb) becomes a dead-letter row, escaped, instead of a spool entry that would stop
the drain. (The escaping rule itself: workers/dead_letters/tests/test_storable.py.)"""

import pytest
from celery.utils import uuid
from django.conf import settings
from kombu import Connection

from tests import tasks
from tests.faults.brokers import broker_queue
from tests.fixtures import last_outbox_id, wait_for, wait_for_outbox_jobs
from tests.waits import ran_on, runs
from workers.core.platform_redis import redis_client
from workers.core.routing import CRITICAL
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.services import dead_letters_requeue
from workers.dead_letters.spool import SET_ASIDE_KEY, SPOOL_KEY
from workers.dead_letters.storable import ESCAPED_CALL_NOTE
from workers.ops.alerts.models import Alert
from workers.ops.alerts.services import FAILURE_KEY


def stored_or_spooled(test_redis, task_id: str) -> DeadLetter | None:
    """The row once there is one; fails the test as soon as the failure went to Redis."""
    def settled() -> object:
        return (DeadLetter.objects.filter(task_id=task_id).first()
                or test_redis.llen(SPOOL_KEY) or test_redis.llen(SET_ASIDE_KEY))
    found = wait_for(settled, what=f"a dead letter for {task_id}")
    assert isinstance(found, DeadLetter), (
        f"{task_id} was kept in Redis instead: {test_redis.lrange(SPOOL_KEY, 0, -1)} "
        f"{test_redis.lrange(SET_ASIDE_KEY, 0, -1)}")
    return found


def test_a_task_failing_with_nul_in_its_call_and_message_is_stored_escaped(live_workers,
                                                                         test_redis):
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)
    jobs_before = last_outbox_id()
    key = uuid()
    result = tasks.refuses_nul.apply_async(args=[key, "a\x00b"], kwargs={"note": "\x00"},
                                           queue=CRITICAL)

    row = stored_or_spooled(test_redis, result.id)
    ran_on(test_redis, result.id)  # the failure handled, its alert (if new) raised
    wait_for_outbox_jobs(test_redis, after_id=jobs_before)  # and delivered: the worker is idle

    assert runs(test_redis, key) == 1
    assert (row.args, row.kwargs) == ([key, "a\\x00b"], {"note": "\\x00"})
    assert row.message == f"refused a\\x00b\n{ESCAPED_CALL_NOTE}"
    assert "PermanentError: refused a\\x00b" in row.traceback
    assert row.exception_type == "workers.core.exceptions.PermanentError"
    refused = dead_letters_requeue(dead_letter_ids=[row.pk], actor="test").refused
    assert "arguments stored escaped" in refused[row.pk]


# The test's own AsyncResult for that id cannot unsubscribe from Redis when it is freed.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failure_whose_task_id_redis_cannot_encode_is_still_a_dead_letter(live_workers,
                                                                           test_redis):
    """A lone surrogate in the task id (JSON's "\\ud800", which any producer can write):
    the earlier attempts' key cannot be built, and the failure was logged by Celery as a
    failed signal handler while the message was acked: the job gone, with no row."""
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)
    jobs_before = last_outbox_id()
    key = uuid()
    task_id = f"{uuid()}\ud800"
    tasks.permanent.apply_async(args=[key], task_id=task_id, queue=CRITICAL)

    row = wait_for(lambda: DeadLetter.objects.filter(
        task_id__startswith=f"{task_id[:-1]}\\ud800~").first(), what="the dead letter")
    wait_for_outbox_jobs(test_redis, after_id=jobs_before)  # its alert delivered: idle

    assert runs(test_redis, key) == 1
    assert row.args == [key]
    assert row.exception_type == "workers.core.exceptions.PermanentError"


def test_a_retried_job_whose_task_id_redis_cannot_encode_keeps_its_records(live_workers,
                                                                          test_redis):
    """The same lone surrogate in a job that retries and holds a dedup key: each attempt's
    error, the retry record and the key are written under its id. Before, each of them
    raised in a signal handler: the dead letter lost the earlier errors, and the key
    stayed held (equal jobs refused) until its TTL."""
    jobs_before = last_outbox_id()
    key = uuid()
    task_id = f"{uuid()}\ud800"
    tasks.transient_until.apply_async(args=[key, 99], task_id=task_id, queue=CRITICAL,
                                      dedup_key=f"surrogate:{key}")

    row = wait_for(lambda: DeadLetter.objects.filter(
        task_id__startswith=f"{task_id[:-1]}\\ud800~").first(), what="the dead letter")
    wait_for_outbox_jobs(test_redis, after_id=jobs_before)  # its alert delivered: idle

    assert runs(test_redis, key) == 3
    assert [(entry["attempt"], entry["exception_type"]) for entry in row.attempt_errors] == [
        (1, "workers.core.exceptions.TransientError"),
        (2, "workers.core.exceptions.TransientError")]
    assert not redis_client().exists(f"workers:dedup:surrogate:{key}")


def test_poison_messages_with_nul_in_the_body_or_the_arguments_are_stored(live_workers,
                                                                          test_redis):
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)
    raw, unknown = uuid(), uuid()
    suffix = uuid().replace("-", "_")  # task names of this run only: each alerts once
    critical = broker_queue(settings.CELERY_BROKER_URL, CRITICAL)
    with Connection(settings.CELERY_BROKER_URL) as connection:
        producer = connection.Producer()
        for task_id, task, body in (
                (raw, f"tests.tasks.gone_{suffix}", b"\x00\xff not json"),
                (unknown, f"apps.gone.tasks.removed_{suffix}",
                 b'[["\\u0000"], {"k": "\\u0000"}, {}]')):
            producer.publish(body, exchange=CRITICAL, routing_key=CRITICAL, declare=[critical],
                             headers={"lang": "py", "task": task, "id": task_id,
                                      "root_id": task_id, "parent_id": None, "retries": 0},
                             serializer=None, content_type="application/json",
                             content_encoding="utf-8")

    row = stored_or_spooled(test_redis, raw)
    assert row.raw_body == "\\x00\\xff not json"  # no task to decode it for: kept raw
    assert row.exception_type == "celery.exceptions.NotRegistered"
    row = stored_or_spooled(test_redis, unknown)
    assert (row.args, row.kwargs, row.raw_body) == (["\\x00"], {"k": "\\x00"}, "")
    assert row.message.endswith(ESCAPED_CALL_NOTE)
    # The worker alerts on each new row after storing it; let it finish before the test
    # database is emptied under it.
    fingerprints = DeadLetter.objects.filter(task_id__in=[raw, unknown]).values_list(
        "fingerprint", flat=True)
    # Its own alerts written (the last write of the worker's handling). Their delivery is
    # not waited for: on RabbitMQ the dead-letter consumer's alert jobs were seen waiting
    # for the outbox sweeper, which no beat runs here.
    wait_for(lambda: Alert.objects.filter(
        key__in=[FAILURE_KEY + fingerprint for fingerprint in fingerprints]).count() == 2,
        what="the alert of each poison message")
