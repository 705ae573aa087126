"""Real workers, real PostgreSQL: a failure carrying NUL (which PostgreSQL refuses in text
and jsonb) becomes a dead-letter row, escaped, instead of a spool entry that would stop
the drain. (The escaping rule itself: workers/dead_letters/tests/test_storable.py.)"""

import json

import pytest
from celery.utils import uuid
from django.conf import settings

from tests import tasks
from tests.faults.brokers import broker_queue
from tests.fixtures import (
    HANG,
    last_outbox_id,
    publisher_connection,
    wait_for,
    wait_for_outbox_jobs,
)
from tests.polling import poll_until
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


def test_messages_whose_task_id_is_not_usable_text_are_dead_letters_and_the_worker_goes_on(
        live_workers, test_redis):
    """A number, a list, an empty id or a lone surrogate (JSON's "\\ud800"), as any producer
    can write them, for a task the worker knows and for one it does not. Celery hashed the
    list and stopped the worker, again with each redelivery; it stored a failed result
    under the others' ids for an unknown task, which raised and stopped the worker; and it
    ran a known task while its records (result, retries, dead letter) failed to be written.
    Each message is now one dead letter, no task runs, and the worker goes on."""
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)
    marker = uuid()
    suffix = marker.replace("-", "_")  # a task name of this run only: it alerts once
    critical = broker_queue(settings.CELERY_BROKER_URL, CRITICAL)
    keys = []
    with publisher_connection(settings.CELERY_BROKER_URL) as connection:
        producer = connection.Producer()
        for n, task in enumerate((tasks.permanent.name, f"tests.tasks.gone_{suffix}")):
            # Ids of their own: a dead letter is one per task id.
            for kind, task_id in (("number", 12346 + n), ("list", [marker, n]), ("empty", ""),
                                  ("surrogate", f"{marker}-{n}\ud800")):
                keys.append(key := f"{marker}-{kind}-{task.rsplit('.', 1)[-1]}")
                producer.publish(
                    json.dumps([[key], {}, {}]).encode(), exchange=CRITICAL,
                    routing_key=CRITICAL, declare=[critical], serializer=None,
                    headers={"lang": "py", "task": task, "id": task_id, "root_id": None,
                             "parent_id": None, "retries": 0},
                    content_type="application/json", content_encoding="utf-8")
    after = uuid()
    tasks.transient_until.apply_async(args=[after, 0], queue=CRITICAL)

    wait_for(lambda: runs(test_redis, after) == 1, what="a job sent after them to run")
    rows = poll_until(lambda: (found := list(DeadLetter.objects.filter(
        args__0__startswith=marker))) and len(found) == len(keys) and found, timeout=HANG)
    if not rows:  # what a flake needs to be told apart: which, and where the others went
        found = DeadLetter.objects.filter(task_name__in=[tasks.permanent.name,
                                                         f"tests.tasks.gone_{suffix}"])
        stored = [(row.task_id, row.args, row.raw_body[:80]) for row in found]
        missing = sorted(set(keys) - {row.args[0] for row in found if row.args})
        pytest.fail(f"no dead letter for {missing}; the run's rows: {stored}; spooled: "
                    f"{test_redis.lrange(SPOOL_KEY, 0, -1)} "
                    f"{test_redis.lrange(SET_ASIDE_KEY, 0, -1)}")
    fingerprints = {row.fingerprint for row in rows}
    wait_for(lambda: Alert.objects.filter(  # its own alerts written: the worker is idle
        key__in=[FAILURE_KEY + fingerprint for fingerprint in fingerprints]).count()
        == len(fingerprints), what="their alerts")

    assert sorted(row.args[0] for row in rows) == sorted(keys)
    assert not any(runs(test_redis, key) for key in keys)
    assert {row.exception_type for row in rows} == {"celery.exceptions.InvalidTaskError",
                                                    "celery.exceptions.NotRegistered"}


def test_a_retried_job_with_a_dedup_key_redis_could_not_encode_keeps_its_records(
        live_workers, test_redis):
    """A lone surrogate in the dedup key, which the message's headers carry: the platform's
    Redis client refused to write the key at the enqueue, and the atomic fetch could not
    decode the message to record it as unacknowledged. Now the job runs, retries, keeps
    each attempt's error in its dead letter, and releases the key."""
    jobs_before = last_outbox_id()
    key = uuid()
    dedup_key = f"surrogate:{key}\ud800"
    result = tasks.transient_until.apply_async(args=[key, 99], queue=CRITICAL,
                                               dedup_key=dedup_key)

    row = wait_for(lambda: DeadLetter.objects.filter(task_id=result.id).first(),
                   what="the dead letter")
    wait_for_outbox_jobs(test_redis, after_id=jobs_before)  # its alert delivered: idle

    assert runs(test_redis, key) == 3
    assert [(entry["attempt"], entry["exception_type"]) for entry in row.attempt_errors] == [
        (1, "workers.core.exceptions.TransientError"),
        (2, "workers.core.exceptions.TransientError")]
    wait_for(lambda: not redis_client().exists(f"workers:dedup:{dedup_key}"),
             what="the dedup key released")


def test_poison_messages_with_nul_in_the_body_or_the_arguments_are_stored(live_workers,
                                                                          test_redis):
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)
    raw, unknown = uuid(), uuid()
    suffix = uuid().replace("-", "_")  # task names of this run only: each alerts once
    critical = broker_queue(settings.CELERY_BROKER_URL, CRITICAL)
    with publisher_connection(settings.CELERY_BROKER_URL) as connection:
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
