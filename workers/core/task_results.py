"""What `get_result()` reads for a standard task (workers/core/task_backend.py): one Redis
hash per result id in the platform's Redis, expiring TASK_RESULT_TTL seconds after its last
change.

Redis, not Celery's result backend: the template runs without one (every Celery task
ignores its result), and a record here outlives the worker that wrote it. Errors are kept
as their exception's path and a redacted traceback, for whoever reads results.

A hash, so that each step costs one round trip: the enqueue's write travels while the
message is published, a start is one script (it reads what it needs and tells a repeat of
a finished job apart), an end one pipeline. Values are JSON, written by Python; the
scripts only move them.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from workers.core.platform_redis import redis_client, redis_text
from workers.core.redaction import redact_text

KEY = "workers:task-results:{id}"  # a hash (until 2026-12 a string under task-result:)

READY, RUNNING, SUCCESSFUL, FAILED = "READY", "RUNNING", "SUCCESSFUL", "FAILED"

#: KEYS[1]: the record. ARGV: the TTL, then field, JSON value pairs. Written only if the
#: record does not exist yet: a worker that was quicker than the enqueue's write keeps its own.
ENQUEUE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

#: KEYS[1]: the record. ARGV: now, the worker id, the TTL (JSON values), then the fields of
#: a new record (a replay from the dead letters has a new id and none). A finished success
#: is returned untouched; anything else becomes RUNNING, one attempt more. Returns the record.
START_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == '"SUCCESSFUL"' then return redis.call('HGETALL', KEYS[1]) end
if not status then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
local ids = redis.call('HGET', KEYS[1], 'worker_ids') or '[]'
if ids == '[]' then ids = '[' .. ARGV[2] .. ']'
else ids = string.sub(ids, 1, -2) .. ', ' .. ARGV[2] .. ']' end
redis.call('HSET', KEYS[1], 'status', '"RUNNING"', 'last_attempted_at', ARGV[1],
           'worker_ids', ids)
if redis.call('HGET', KEYS[1], 'started_at') == 'null' then
    redis.call('HSET', KEYS[1], 'started_at', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HGETALL', KEYS[1])
"""


@dataclass
class ResultRecord:
    task_path: str
    args: list[Any]
    kwargs: dict[str, Any]
    status: str = READY
    enqueued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    last_attempted_at: str | None = None
    worker_ids: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    return_value: Any = None

    def moment(self, name: str) -> datetime | None:
        value = getattr(self, name)
        return datetime.fromisoformat(value) if value else None

    def fields(self) -> list[str]:
        """Field, JSON value, field, JSON value… as HSET takes them."""
        return [item for name, value in vars(self).items()
                for item in (name, json.dumps(value))]


def result_load(*, result_id: str) -> ResultRecord | None:
    return _record(redis_client().hgetall(KEY.format(id=result_id)))


def result_save(*, result_id: str, record: ResultRecord) -> None:
    _write(result_id, record)


def result_enqueued(*, result_id: str, task_path: str, args: list[Any],
                    kwargs: dict[str, Any], at: datetime | None) -> None:
    """READY, written now (a job the outbox will publish)."""
    with result_enqueued_while_publishing(result_id=result_id, task_path=task_path,
                                          args=args, kwargs=kwargs, at=at):
        pass


@contextmanager
def result_enqueued_while_publishing(*, result_id: str, task_path: str, args: list[Any],
                                     kwargs: dict[str, Any],
                                     at: datetime | None) -> Iterator[ResultRecord]:
    """READY, written while the body of the `with` publishes the job: the write is sent
    first and its reply read after, so the two round trips overlap. If the publish fails,
    the record is removed again."""
    record = ResultRecord(task_path=task_path, args=args, kwargs=kwargs,
                          enqueued_at=(at or timezone.now()).isoformat())
    key = KEY.format(id=result_id)
    pool = redis_client().connection_pool
    connection = pool.get_connection()
    try:
        connection.send_command("EVAL", ENQUEUE_SCRIPT, 1, key, settings.TASK_RESULT_TTL,
                                *record.fields())
        try:
            yield record
        except BaseException:
            connection.read_response()
            redis_client().delete(key)
            raise
        connection.read_response()
    except RedisError:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def result_started(*, result_id: str, task_path: str, args: list[Any],
                   kwargs: dict[str, Any], worker_id: str) -> ResultRecord:
    """RUNNING, one more attempt by `worker_id`, unless the job already succeeded (its
    record comes back SUCCESSFUL and untouched: this delivery is a repeat)."""
    now = json.dumps(_now())
    new = ResultRecord(task_path=task_path, args=args, kwargs=kwargs, enqueued_at=_now())
    reply = redis_client().eval(START_SCRIPT, 1, KEY.format(id=result_id), now,
                                json.dumps(worker_id), settings.TASK_RESULT_TTL,
                                *new.fields())
    record = _record(dict(zip(reply[::2], reply[1::2], strict=True)))
    assert record is not None  # the script wrote it
    return record


def result_finished(*, result_id: str, record: ResultRecord, status: str,
                    return_value: Any = None, error: BaseException | None = None,
                    traceback: str = "") -> ResultRecord:
    """SUCCESSFUL or FAILED; READY again when the error is retried."""
    record.status = status
    if status != READY:
        record.finished_at = _now()
    record.return_value = return_value
    if error is not None:
        kind = type(error)
        record.errors.append({"exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
                              "traceback": redact_text(traceback)})
    _write(result_id, record)
    return record


def _write(result_id: str, record: ResultRecord) -> None:
    key = KEY.format(id=result_id)
    fields = record.fields()
    with redis_client().pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping=dict(zip(fields[::2], fields[1::2], strict=True)))
        pipe.expire(key, settings.TASK_RESULT_TTL)
        pipe.execute()


def _record(stored: dict[Any, Any]) -> ResultRecord | None:
    if not stored:
        return None
    return ResultRecord(**{redis_text(name): json.loads(value) for name, value in stored.items()})


def _now() -> str:
    return timezone.now().isoformat()
