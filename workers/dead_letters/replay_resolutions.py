"""Closing replayed dead letters in batches: a replay that succeeds is noted in Redis, and
its row is resolved with others in one UPDATE.

Resolving each row as its replay succeeded cost an UPDATE and a durable commit per job,
half a requeue's time (docs/performance.md). Now the success is an RPUSH: by the worker's
main process with the replay's ack on a Redis broker (workers/runtime/request.py), else by
the pool process, which then resolves a batch if its note is the RESOLVE_BATCH-th. Each
worker's main process resolves what is noted every RESOLVE_EVERY seconds
(workers/runtime/replay_resolution.py), and beat's spool drain does too, for a worker that
has stopped.

A batch is claimed by moving its notes to a claim list of its own in one step, and the
claim is deleted once its UPDATE has committed; a process killed in between leaves the
claim, which is resolved again once it is CLAIM_ABANDONED seconds old. Resolving is
idempotent (only a row still "requeued" by that very replay changes), so a claim
resolved twice does no harm. Redis losing the notes (it keeps no copy on disk here)
leaves those rows "requeued", their replays run: the note is the only record of that.
"""

import json
import logging
import time
import uuid
from typing import Any

import redis
from django.db import connection, transaction
from django.utils import timezone

from workers.core.platform_redis import redis_client, redis_text
from workers.core.redaction import visible_line
from workers.core.task_ids import task_id_usable
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.storable import dead_letter_id_usable

logger = logging.getLogger(__name__)

# One hash tag: the script touches all three keys (a Redis Cluster keeps them together).
PENDING_KEY = "{workers:replays}:succeeded"
CLAIMS_KEY = "{workers:replays}:claims"  # claim list name: when it was claimed
CLAIM_PREFIX = "{workers:replays}:claim:"
#: Notes resolved together; the pusher of a full batch resolves it.
RESOLVE_BATCH = 200
#: Seconds after which a claim is taken for the work of a process that died.
CLAIM_ABANDONED = 60

# Moves up to ARGV[1] notes from the pending list to a new claim list, atomically.
_CLAIM = """
local notes = redis.call('LPOP', KEYS[1], ARGV[1])
if notes then
  redis.call('RPUSH', KEYS[2], unpack(notes))
  redis.call('ZADD', KEYS[3], ARGV[2], KEYS[2])
end
return notes
"""


def replay_note(*, dead_letter_id: int, replay_task_id: str) -> str:
    """What is pushed onto PENDING_KEY for a replay that succeeded."""
    return json.dumps([dead_letter_id, replay_task_id])


def replay_succeeded(*, dead_letter_id: int, replay_task_id: str) -> None:
    """Note that a dead letter's replay succeeded; resolve a batch if this one fills it.
    With Redis unreachable (beside RabbitMQ) the row is resolved on its own, as before."""
    try:
        pending = redis_client().rpush(PENDING_KEY, replay_note(
            dead_letter_id=dead_letter_id, replay_task_id=replay_task_id))
    except redis.RedisError:
        _resolve(ids=[dead_letter_id], task_ids=[replay_task_id])
        return
    if pending >= RESOLVE_BATCH:
        replays_resolve(limit=RESOLVE_BATCH)


def replays_resolve(*, limit: int | None = None) -> int:
    """Resolve the rows of noted successes (up to about `limit` notes, else all) and of
    abandoned claims; return how many rows changed. A DatabaseError leaves the claim to
    be resolved once it is abandoned."""
    client = redis_client()
    resolved = 0
    for stale in client.zrangebyscore(CLAIMS_KEY, "-inf", time.time() - CLAIM_ABANDONED):
        claim = redis_text(stale)
        resolved += _resolve_claim(claim, client.lrange(claim, 0, -1))
    taken = 0
    while limit is None or taken < limit:
        claim = f"{CLAIM_PREFIX}{uuid.uuid4().hex}"
        notes = client.eval(_CLAIM, 3, PENDING_KEY, claim, CLAIMS_KEY,
                            RESOLVE_BATCH, time.time())
        if not notes:
            break
        taken += len(notes)
        resolved += _resolve_claim(claim, notes)
    return resolved


def _resolve_claim(claim: str, notes: list[Any]) -> int:
    pairs = [pair for pair in map(_parsed_note, notes) if pair is not None]
    resolved = _resolve(ids=[pair[0] for pair in pairs],
                        task_ids=[pair[1] for pair in pairs]) if pairs else 0
    client = redis_client()
    client.delete(claim)
    client.zrem(CLAIMS_KEY, claim)
    return resolved


def _parsed_note(note: Any) -> tuple[int, str] | None:
    """(dead letter id, replay task id), or None for a note no replay of a row could have
    written: its id comes from the message's `replay_of` header, which any producer can
    set, and its task id from the message too (a NUL, which PostgreSQL text refuses, runs
    in a worker). One such note failed the UPDATE of every note claimed with it, on every
    pass."""
    try:
        dead_letter_id, task_id = json.loads(redis_text(note))
    except (ValueError, TypeError):
        dead_letter_id = task_id = None
    if (not dead_letter_id_usable(dead_letter_id) or not task_id_usable(task_id)
            or "\x00" in task_id):
        logger.warning("dropped a replay note no dead letter's replay wrote: %s",
                       visible_line(redis_text(note)[:200]))
        return None
    return dead_letter_id, task_id


@transaction.atomic
def _resolve(*, ids: list[int], task_ids: list[str]) -> int:
    """One UPDATE for the batch: each row closed if it is still requeued by that replay."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        return sum(DeadLetter.objects.filter(
            pk=pk, replay_task_id=task_id, status=DeadLetter.Status.REQUEUED).update(
            status=DeadLetter.Status.RESOLVED, closed_at=now, closed_by="replay",
            updated_at=now) for pk, task_id in zip(ids, task_ids, strict=True))
    table = DeadLetter._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, closed_at = %s, closed_by = 'replay', "  # noqa: S608
            "updated_at = %s FROM unnest(%s::bigint[], %s::varchar[]) AS done(id, task_id) "
            f"WHERE {table}.id = done.id AND {table}.replay_task_id = done.task_id "
            f"AND {table}.status = %s",
            [DeadLetter.Status.RESOLVED, now, now, ids, task_ids, DeadLetter.Status.REQUEUED])
        return cursor.rowcount
