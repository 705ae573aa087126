"""Replays resolved in batches: each success noted in Redis, rows closed an UPDATE a batch,
only a row still requeued by that very replay, and nothing lost to a process that died
between taking a batch and committing it."""

import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.factories import DeadLetterFactory
from workers.dead_letters import replay_resolutions
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.replay_resolutions import (
    CLAIM_ABANDONED,
    CLAIM_PREFIX,
    CLAIMS_KEY,
    PENDING_KEY,
    RESOLVE_BATCH,
    replay_succeeded,
    replays_resolve,
)

pytestmark = pytest.mark.django_db


def requeued(n: int) -> list[DeadLetter]:
    return [DeadLetterFactory(status=DeadLetter.Status.REQUEUED, replay_task_id=f"replay-{i}")
            for i in range(n)]


def statuses() -> dict[str, int]:
    return {status: DeadLetter.objects.filter(status=status).count()
            for status in DeadLetter.Status.values if DeadLetter.objects.filter(status=status)}


def test_a_full_batch_is_resolved_by_its_last_note_with_one_update(test_redis):
    rows = requeued(RESOLVE_BATCH + 3)

    with CaptureQueriesContext(connection) as queries:
        for row in rows:
            replay_succeeded(dead_letter_id=row.pk, replay_task_id=row.replay_task_id)

    updates = [query for query in queries.captured_queries
               if query["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    assert statuses() == {"resolved": RESOLVE_BATCH, "requeued": 3}
    assert test_redis.llen(PENDING_KEY) == 3
    assert replays_resolve() == 3
    assert statuses() == {"resolved": RESOLVE_BATCH + 3}
    resolved = DeadLetter.objects.first()
    assert (resolved.closed_by, resolved.closed_at is not None) == ("replay", True)
    assert not test_redis.keys(f"{CLAIM_PREFIX}*")
    assert not test_redis.zcard(CLAIMS_KEY)


def test_only_a_row_still_requeued_by_that_replay_is_resolved(test_redis):
    mine, requeued_again, discarded = requeued(3)
    requeued_again.replay_task_id = "a-later-replay"
    requeued_again.save()
    discarded.status = DeadLetter.Status.DISCARDED
    discarded.save()
    for row, task_id in ((mine, "replay-0"), (requeued_again, "replay-1"),
                         (discarded, "replay-2")):
        replay_succeeded(dead_letter_id=row.pk, replay_task_id=task_id)

    assert replays_resolve() == 1

    assert [row.status for row in DeadLetter.objects.order_by("pk")] == [
        "resolved", "requeued", "discarded"]


def test_a_batch_taken_by_a_process_that_died_is_resolved_once_abandoned(test_redis,
                                                                          monkeypatch):
    (row,) = requeued(1)
    replay_succeeded(dead_letter_id=row.pk, replay_task_id=row.replay_task_id)

    def killed(*, ids: list[int], task_ids: list[str]) -> int:
        raise SystemExit("killed between taking the batch and committing it")

    with monkeypatch.context() as patch:
        patch.setattr(replay_resolutions, "_resolve", killed)
        with pytest.raises(SystemExit):
            replays_resolve()
    assert test_redis.llen(PENDING_KEY) == 0
    (claim,) = test_redis.zrange(CLAIMS_KEY, 0, -1)
    assert [json.loads(note) for note in test_redis.lrange(claim, 0, -1)] == [
        [row.pk, row.replay_task_id]]

    assert replays_resolve() == 0  # not abandoned yet: its process may still commit it
    test_redis.zadd(CLAIMS_KEY, {claim: time.time() - CLAIM_ABANDONED - 1})
    assert replays_resolve() == 1
    assert statuses() == {"resolved": 1}
    assert not test_redis.exists(claim)
    assert not test_redis.zcard(CLAIMS_KEY)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(forged=JSON_VALUES, task_id=st.text(max_size=8))
@example(forged=2**63, task_id="t")
@example(forged="1", task_id="t")
@example(forged=True, task_id="t")
@example(forged=1, task_id="a\x00b")
@example(forged=1, task_id="\ud800")
def test_a_note_whose_replay_header_was_forged_is_dropped_and_its_batch_resolved(
        test_redis, forged, task_id):
    """The id in a note is the message's `replay_of` header, which any producer can set,
    and its task id the message's. A forged one (text, a list, an id past a bigint, a NUL
    in the task id) failed the UPDATE of every note claimed with it, on every pass; now it
    is dropped and the rest of its batch is resolved."""
    test_redis.delete(PENDING_KEY)
    row, = requeued(1)
    replay_resolutions.redis_client().rpush(PENDING_KEY, json.dumps([forged, task_id]))
    replay_succeeded(dead_letter_id=row.pk, replay_task_id=row.replay_task_id)

    replays_resolve()

    row.refresh_from_db()
    assert row.status == DeadLetter.Status.RESOLVED
    assert test_redis.llen(PENDING_KEY) == 0
    assert test_redis.zcard(CLAIMS_KEY) == 0
    row.delete()
