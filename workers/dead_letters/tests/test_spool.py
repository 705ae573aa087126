"""The Redis spool that keeps dead letters while the database is down (the outage itself
is in tests/faults/test_database_outage.py)."""

import json
import logging

import pytest
from django.db import OperationalError

from workers.core.signals import task_dead_lettered
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.services import dead_letter_store, dead_letters_drain_spool
from workers.dead_letters.spool import (
    SET_ASIDE_KEY,
    SPOOL_KEY,
    dead_letter_spool_drain,
    dead_letter_spool_push,
    dead_letter_spool_set_aside_size,
)


def fields(task_id: str) -> dict:
    return {"task_id": task_id, "task_name": "tests.tasks.permanent", "queue": "critical",
            "args": ["k"], "kwargs": {}, "exception_type": "workers.core.exceptions.PermanentError",
            "message": "invalid input", "traceback": "", "attempts": 1, "worker": "w",
            "replay_of_id": None, "raw_body": ""}


@pytest.fixture
def spool(test_redis):
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)
    yield test_redis
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)


def set_aside(spool) -> dict[str, str]:
    """task id (or the entry itself when it is no dead letter): the error it was set aside for"""
    kept = {}
    for record in map(json.loads, spool.lrange(SET_ASIDE_KEY, 0, -1)):
        try:
            kept[json.loads(record["entry"])["task_id"]] = record["error"]
        except (ValueError, KeyError, TypeError):
            kept[record["entry"]] = record["error"]
    return kept


@pytest.mark.django_db
def test_the_drain_stores_each_spooled_failure_once_and_sets_aside_what_is_not_json(spool, caplog):
    dead_letter_spool_push(fields=fields("a"))
    spool.rpush(SPOOL_KEY, b"\xff not json")
    dead_letter_spool_push(fields=fields("b"))
    dead_letter_spool_push(fields=fields("a"))  # the same failure reported twice

    assert dead_letters_drain_spool() == 3

    assert sorted(DeadLetter.objects.values_list("task_id", flat=True)) == ["a", "b"]
    assert spool.llen(SPOOL_KEY) == 0
    assert "not JSON" in caplog.text
    assert list(set_aside(spool)) == ["\\xff not json"]  # kept for an operator, not dropped
    assert dead_letters_drain_spool() == 0


@pytest.mark.django_db
def test_a_database_error_leaves_the_entry_and_the_rest_for_the_next_drain(spool):
    for task_id in ("a", "b"):
        dead_letter_spool_push(fields=fields(task_id))

    def database_down(*, fields):
        raise OperationalError("connection refused")

    assert dead_letter_spool_drain(store=database_down, database_up=lambda: False) == 0
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


@pytest.mark.django_db
def test_an_entry_the_database_refuses_is_set_aside_and_the_drain_goes_on(spool, caplog):
    dead_letter_spool_push(fields=fields("good-1"))
    dead_letter_spool_push(fields=fields("negative") | {"attempts": -1})  # a CHECK constraint
    dead_letter_spool_push(fields=fields("not-a-number") | {"attempts": "many"})
    dead_letter_spool_push(fields={"task_id": "half"})  # not a whole dead letter
    dead_letter_spool_push(fields=fields("good-2"))

    with caplog.at_level(logging.ERROR):
        assert dead_letters_drain_spool() == 2

    assert sorted(DeadLetter.objects.values_list("task_id", flat=True)) == ["good-1", "good-2"]
    assert spool.llen(SPOOL_KEY) == 0
    errors = set_aside(spool)
    assert list(errors) == ["negative", "not-a-number", "half"]
    assert errors["negative"].startswith("IntegrityError: ")
    assert errors["half"] == "KeyError: 'task_name'"
    assert dead_letter_spool_set_aside_size() == 3
    assert caplog.text.count("dead-letter spool: set aside") == 3
    assert dead_letters_drain_spool() == 0  # nothing comes back from the side


@pytest.mark.django_db
def test_a_connection_error_while_the_database_answers_is_about_the_entry(spool):
    for task_id in ("a", "b"):
        dead_letter_spool_push(fields=fields(task_id))

    def refuses_a(*, fields):
        if fields["task_id"] == "a":
            raise OperationalError("index row size exceeds the maximum")  # a limit, not down
        return dead_letter_store(fields=fields)

    assert dead_letter_spool_drain(store=refuses_a) == 1  # the real `SELECT 1` answers
    assert list(set_aside(spool)) == ["a"]
    assert list(DeadLetter.objects.values_list("task_id", flat=True)) == ["b"]


@pytest.mark.django_db
def test_an_entry_spooled_with_nul_before_it_was_escaped_is_stored_escaped(spool):
    """What an older release spooled when it took NUL's DataError for an outage."""
    spool.rpush(SPOOL_KEY, json.dumps(fields("nul") | {
        "args": ["k\x00"], "kwargs": {"n": float("nan")}, "message": "bad\x00",
        "raw_body": "\ud800"}))

    assert dead_letters_drain_spool() == 1

    row = DeadLetter.objects.get(task_id="nul")
    assert (row.args, row.kwargs, row.raw_body) == (["k\\x00"], {"n": "NaN"}, "\\ud800")
    assert row.message.startswith("bad\\x00\n[arguments stored escaped")
    assert set_aside(spool) == {}
