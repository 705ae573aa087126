"""Failures carrying what PostgreSQL refuses (NUL, surrogates, NaN, over-long headers) are
stored escaped, never spooled as an outage; escaped arguments are not replayed as exact.
(Through real workers: workers/runtime/tests/test_storable_failures.py.)"""

import json
import logging
import math
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.core.exceptions import PermanentError
from workers.dead_letters.edits import dead_letter_edit_requeue
from workers.dead_letters.fingerprints import failure_fingerprint
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.rules import Action
from workers.dead_letters.services import (
    dead_letter_record,
    dead_letter_record_message,
    dead_letters_preview,
    dead_letters_requeue,
)
from workers.dead_letters.spool import SET_ASIDE_KEY, SPOOL_KEY
from workers.dead_letters.storable import ESCAPED_CALL_NOTE, storable_fields

#: What PostgreSQL refuses, and what is easily confused with it.
HOSTILE = st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d\ude00", "\x01", "\x1b",
                           "\x7f", "\uffff", "\\x00", "\\u0000", "\u2028", "\U0010ffff"])
TEXT = st.lists(st.one_of(st.text(max_size=5), HOSTILE), max_size=6).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12)
EXAMPLES = count()


@pytest.fixture
def spool(test_redis):
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)
    yield test_redis
    test_redis.delete(SPOOL_KEY, SET_ASIDE_KEY)


def record(task_id: str, *, args=(), kwargs=None, message: str = "invalid input",
           **fields) -> DeadLetter | None:
    return dead_letter_record(**{
        "task_id": task_id, "task_name": "tests.tasks.permanent", "queue": "critical",
        "args": args, "kwargs": kwargs or {}, "exception": PermanentError(message),
        "traceback": "", "attempts": 1, "worker": "w", "replay_of_id": None, **fields})


@pytest.mark.django_db
def test_nul_and_surrogates_everywhere_are_stored_escaped_not_spooled(spool):
    row = record("nul", args=["k\x00", float("nan")], kwargs={"card\x00": "\ud800"},
                 message="bad \x00 input", traceback="line\x00 1", raw_body="body\x00",
                 attempt_errors=[{"message": "earlier \x00"}])

    assert row is not None
    row.refresh_from_db()
    assert row.args == ["k\\x00", "NaN"]
    assert row.kwargs == {"card\\x00": "\\ud800"}
    assert row.message == f"bad \\x00 input\n{ESCAPED_CALL_NOTE}"
    assert (row.traceback, row.raw_body) == ("line\\x00 1", "body\\x00")
    assert row.attempt_errors == [{"message": "earlier \\x00"}]
    # One cause whether or not its arguments needed escaping.
    assert row.fingerprint == failure_fingerprint(
        task_name=row.task_name, exception_type=row.exception_type, message="bad \\x00 input")
    assert spool.llen(SPOOL_KEY) == spool.llen(SET_ASIDE_KEY) == 0


@pytest.mark.django_db
def test_poison_messages_with_nul_in_headers_body_or_arguments_are_stored(spool):
    undecodable = dead_letter_record_message(
        task_id="poison\x00" + "i" * 300, task_name="t\x00" * 200, queue="q\x00" * 100,
        raw_body="\x00\\x80 not json", content_type="application/json",
        exception=ValueError("bad\x00"), worker="w\x00")
    unknown = dead_letter_record_message(
        task_id="unknown", task_name="apps.gone.tasks.removed", queue="critical",
        raw_body='[["\\u0000"], {"k": "\\ud800"}, {}]', content_type="application/json",
        exception=ValueError("no task"), worker="w")

    assert undecodable is not None
    assert unknown is not None
    undecodable.refresh_from_db()
    assert undecodable.raw_body == "\\x00\\x80 not json"
    assert undecodable.task_id.startswith("poison\\x00iii")
    assert len(undecodable.task_id) == 255
    assert (len(undecodable.task_name), len(undecodable.queue)) == (255, 64)
    assert (undecodable.message, undecodable.worker) == ("bad\\x00", "w\\x00")
    unknown.refresh_from_db()
    assert (unknown.args, unknown.kwargs, unknown.raw_body) == (["\\x00"], {"k": "\\ud800"}, "")
    assert spool.llen(SPOOL_KEY) == spool.llen(SET_ASIDE_KEY) == 0


@pytest.mark.django_db
def test_task_ids_that_escape_alike_stay_one_row_each(spool):
    """A NUL is stored as the four characters backslash-x-0-0: without more, the failure
    of job "z\\x00z" and that of a job whose id is those characters were one row, the
    second's call lost."""
    hostile, literal = "z\x00z", "z\\x00z"
    ids = [getattr(record(task_id), "pk", None) for task_id in (hostile, literal, hostile)]

    assert None not in ids
    assert ids[0] == ids[2] != ids[1]
    assert DeadLetter.objects.get(pk=ids[1]).task_id == literal  # kept as it was
    assert DeadLetter.objects.get(pk=ids[0]).task_id.startswith("z\\x00z~")


@pytest.mark.django_db
def test_over_long_task_ids_stay_one_row_each(spool):
    first, second = "x" * 300 + "1", "x" * 300 + "2"
    ids = [getattr(record(task_id), "pk", None) for task_id in (first, second, first)]

    assert None not in ids
    assert ids[0] == ids[2] != ids[1]


@pytest.mark.django_db
def test_escaped_arguments_are_not_replayed_until_an_operator_edits_them(spool):
    escaped = record("escaped", args=["k\x00"])
    exact = record("exact", args=["k"], message="bad \x00 message only")
    assert escaped is not None
    assert exact is not None

    outcome = dead_letters_requeue(dead_letter_ids=[escaped.pk, exact.pk], actor="test")

    assert list(outcome.requeued) == [exact.pk]
    assert "arguments stored escaped" in outcome.refused[escaped.pk]
    assert dead_letters_preview(action=Action.REDRIVE, dead_letter_ids=[escaped.pk]).left_out
    dead_letter_edit_requeue(dead_letter_id=escaped.pk, payload='{"args": ["k"]}',
                             reason="the NUL was the bug", actor="test")
    escaped.refresh_from_db()
    assert (escaped.status, escaped.args, escaped.original_args) == (
        DeadLetter.Status.REQUEUED, ["k"], ["k\\x00"])


@pytest.mark.django_db
def test_a_row_the_database_refuses_for_another_reason_is_set_aside_not_spooled(spool, caplog):
    with caplog.at_level(logging.ERROR):
        assert record("negative", attempts=-1) is None  # a CHECK constraint, not an outage

    assert not DeadLetter.objects.filter(task_id="negative").exists()
    assert spool.llen(SPOOL_KEY) == 0
    set_aside = json.loads(spool.lindex(SET_ASIDE_KEY, 0))
    assert json.loads(set_aside["entry"])["task_id"] == "negative"
    assert "IntegrityError" in set_aside["error"]
    assert "set aside" in caplog.text


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(JSON, max_size=4), kwargs=st.dictionaries(TEXT, JSON, max_size=4),
       message=TEXT, traceback=TEXT)
@pytest.mark.django_db
def test_any_text_or_json_becomes_a_stored_row(spool, args, kwargs, message, traceback):
    row = record(f"property-{next(EXAMPLES)}", args=args, kwargs=kwargs, message=message,
                 traceback=traceback)

    assert row is not None
    assert spool.llen(SPOOL_KEY) == spool.llen(SET_ASIDE_KEY) == 0
    row.refresh_from_db()
    escaped = refused_anywhere([args, kwargs])
    assert row.message.endswith(ESCAPED_CALL_NOTE) == escaped
    if not escaped:
        assert same_json([row.args, row.kwargs], [args, kwargs])


def refused_anywhere(value) -> bool:
    """Whether PostgreSQL would refuse some part of `value` as jsonb (said independently of
    the escaping code)."""
    if isinstance(value, str):
        return any(char == "\x00" or "\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(map(refused_anywhere, value))
    if isinstance(value, dict):
        return any(map(refused_anywhere, [*value, *value.values()]))
    return False


def same_json(stored, sent) -> bool:
    """Equal as jsonb keeps numbers: as decimals, so 1.5e17 comes back as an integer."""
    if isinstance(sent, bool) or sent is None or isinstance(sent, str):
        return stored == sent and type(stored) is type(sent)
    if isinstance(sent, int):
        return stored == sent and not isinstance(stored, bool)
    if isinstance(sent, float):
        return isinstance(stored, int | float) and float(stored) == sent
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(
            map(same_json, stored, sent))
    return (isinstance(stored, dict) and stored.keys() == sent.keys()
            and all(same_json(stored[key], sent[key]) for key in sent))


@given(fields=st.fixed_dictionaries({
    "task_id": TEXT, "task_name": TEXT, "queue": TEXT, "message": TEXT, "args": JSON,
    "kwargs": st.dictionaries(TEXT, JSON)}))
def test_escaping_twice_changes_nothing(fields):
    once = storable_fields(fields=fields)

    assert storable_fields(fields=once) == once

