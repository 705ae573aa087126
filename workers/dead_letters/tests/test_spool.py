"""The Redis spool that keeps dead letters while the database is down (the outage itself
is in tests/faults/test_database_outage.py)."""

import json

import pytest
from django.db import OperationalError

from workers.api.signals import task_dead_lettered
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.services import dead_letter_store, dead_letters_drain_spool
from workers.dead_letters.spool import SPOOL_KEY, dead_letter_spool_drain, dead_letter_spool_push


def fields(task_id: str) -> dict:
    return {"task_id": task_id, "task_name": "tests.tasks.permanent", "queue": "critical",
            "args": ["k"], "kwargs": {}, "exception_type": "workers.api.exceptions.PermanentError",
            "message": "invalid input", "traceback": "", "attempts": 1, "worker": "w",
            "replay_of_id": None, "raw_body": ""}


@pytest.fixture
def spool(test_redis):
    test_redis.delete(SPOOL_KEY)
    return test_redis


@pytest.mark.django_db
def test_the_drain_stores_each_spooled_failure_once_and_drops_what_is_not_json(spool, caplog):
    dead_letter_spool_push(fields=fields("a"))
    spool.rpush(SPOOL_KEY, b"\xff not json")
    dead_letter_spool_push(fields=fields("b"))
    dead_letter_spool_push(fields=fields("a"))  # the same failure reported twice

    assert dead_letters_drain_spool() == 3

    assert sorted(DeadLetter.objects.values_list("task_id", flat=True)) == ["a", "b"]
    assert spool.llen(SPOOL_KEY) == 0
    assert "not JSON" in caplog.text
    assert dead_letters_drain_spool() == 0


@pytest.mark.django_db
def test_a_database_error_leaves_the_entry_and_the_rest_for_the_next_drain(spool):
    for task_id in ("a", "b"):
        dead_letter_spool_push(fields=fields(task_id))

    def database_down(*, fields):
        raise OperationalError("connection refused")

    assert dead_letter_spool_drain(store=database_down) == 0
    assert [json.loads(entry)["task_id"] for entry in spool.lrange(SPOOL_KEY, 0, -1)] == [
        "a", "b"]
    assert dead_letter_spool_drain(store=dead_letter_store) == 2


@pytest.mark.django_db
def test_apps_hear_of_each_dead_letter_once_after_it_commits_even_from_the_spool(
        spool, django_capture_on_commit_callbacks):
    heard = []

    def receiver(sender, task_id, args, kwargs, **_):
        heard.append((sender, task_id, args))

    task_dead_lettered.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            dead_letter_spool_push(fields=fields("spooled"))
            dead_letters_drain_spool()
            dead_letter_store(fields=fields("direct"))
            dead_letter_store(fields=fields("direct"))  # reported twice: one row, one signal
            assert heard == []  # not before the commit
    finally:
        task_dead_lettered.disconnect(receiver)
    assert heard == [("tests.tasks.permanent", "spooled", ["k"]),
                     ("tests.tasks.permanent", "direct", ["k"])]
