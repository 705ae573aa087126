"""Messages no task can be built from are parked as dead letters; the worker carries on."""

import json
import time
import uuid

import redis

from tests.faults.brokers import FAULT_REDIS, broker_name, broker_queue
from tests.faults.conftest import BOTH_BROKERS
from tests.faults.harness import Processes, new_keys, send_effects, settle
from tests.fixtures import HANG, publisher_connection
from tests.polling import poll_until
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.services import dead_letters_requeue
from workers.dead_letters.spool import SPOOL_KEY


def task_headers(task: str, task_id: str) -> dict:
    return {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
            "retries": 0, "argsrepr": "", "kwargsrepr": ""}


# kind -> (task name or None for no task headers, body, content type, expected exception)
POISON = {
    "undecodable body": ("tests.tasks.record_effect", b"\x80\x81 not json",
                         "application/json", "kombu.exceptions.DecodeError"),
    "pickle (refused content type)": ("tests.tasks.record_effect", b"\x80\x04K\x01.",
                                      "application/x-python-serialize",
                                      "kombu.exceptions.ContentDisallowed"),
    "unknown task": ("apps.gone.tasks.removed_last_release", b'[["a"], {}, {}]',
                     "application/json", "celery.exceptions.NotRegistered"),
    "arguments the task cannot accept": ("tests.tasks.record_effect",
                                         b'[[1, 2, 3, 4], {}, {}]', "application/json",
                                         "builtins.TypeError"),
    "body of the wrong shape": ("tests.tasks.record_effect", b'{"x": 1}',
                                "application/json", "celery.exceptions.InvalidTaskError"),
}


@BOTH_BROKERS
def test_each_poison_kind_is_dead_lettered_and_the_worker_keeps_consuming(
        processes: Processes, fault_broker, record_ledger):
    processes.worker("poisoned", fault_broker, concurrency=2)
    marker = uuid.uuid4().hex
    ids = {kind: str(uuid.uuid4()) for kind in POISON}
    critical = broker_queue(fault_broker, "critical")
    with publisher_connection(fault_broker) as connection:
        producer = connection.Producer()
        for kind, (task, body, content_type, _) in POISON.items():
            producer.publish(body, exchange="critical", routing_key="critical",
                             declare=[critical],  # bound even if the worker has not yet
                             headers=task_headers(task, ids[kind]), serializer=None,
                             content_type=content_type, content_encoding="utf-8")
        for body in (json.dumps({"not": "a task", "marker": marker}).encode(),
                     b"\xff garbage " + marker.encode()):
            producer.publish(body, exchange="critical", routing_key="critical",
                             declare=[critical], serializer=None,
                             headers={"sender": "a misconfigured client"},
                             content_type="application/json", content_encoding="utf-8")
    sent_at = time.monotonic()
    good = new_keys(10)
    send_effects(fault_broker, good, seconds=0)  # queued behind the poison

    ledger = record_ledger(settle(f"poison messages, 5 kinds ({broker_name(fault_broker)})",
                                  [*ids.values(), *good], since=sent_at,
                                  broker_url=fault_broker))

    assert (ledger.completed, ledger.dead_lettered) == (10, 5)
    rows = {row.task_id: row for row in DeadLetter.objects.filter(task_id__in=ids.values())}
    for kind, (task, _, _, exception) in POISON.items():
        row = rows[ids[kind]]
        assert (row.task_name, row.queue, row.exception_type) == (task, "critical", exception)
    assert rows[ids["undecodable body"]].raw_body == "\\x80\\x81 not json"
    assert rows[ids["unknown task"]].args == ["a"]  # decodable: replayable once deployed
    assert rows[ids["arguments the task cannot accept"]].args == [1, 2, 3, 4]
    taskless = poll_until(lambda: list(DeadLetter.objects.filter(raw_body__contains=marker)),
                          timeout=HANG)
    assert taskless, ("no row for the messages without task headers: "
                      f"{redis.Redis.from_url(FAULT_REDIS).llen(SPOOL_KEY)} in the spool, rows "
                      f"{list(DeadLetter.objects.values_list('task_id', 'exception_type'))}")
    assert len(taskless) == 2
    assert all(row.task_name == "" and row.task_id.startswith("poison-") for row in taskless)
    for row in [rows[ids["undecodable body"]], *taskless]:
        refused = dead_letters_requeue(dead_letter_ids=[row.pk], actor="test").refused
        assert "no usable task call" in refused[row.pk]
