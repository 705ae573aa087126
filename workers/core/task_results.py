"""What `get_result()` reads for a standard task (workers/core/task_backend.py): one Redis
hash per result id in the platform's Redis, expiring TASK_RESULT_TTL seconds after its last
change.

Redis, not Celery's result backend: the template runs without one (every Celery task
ignores its result), and a record here outlives the worker that wrote it. Errors are kept
as their exception's path and a redacted traceback, for whoever reads results.

A hash, so that each step costs one round trip and carries only what changes: the
enqueue's write travels while the message is published, a start is one script (it tells a
repeat of a finished job apart and returns the few fields the message does not carry), a
success is sent without waiting for its answer (read before the next one), a failure is one
pipeline. Values are JSON, written by Python; the scripts only move them.
"""

import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, partial
from typing import Any

from celery.signals import worker_process_shutdown
from django.conf import settings
from django.utils import timezone
from redis.commands.core import Script
from redis.exceptions import NoScriptError, RedisError, ResponseError

from workers.core.platform_redis import redis_client, redis_text
from workers.core.redaction import redact_text

logger = logging.getLogger(__name__)

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

#: KEYS[1]: the record. ARGV: now and the worker id (JSON), the TTL. Nothing if there is no
#: record (a replay from the dead letters has a new id and none); a finished success is
#: left untouched; anything else becomes RUNNING, one attempt more. Returns what the
#: signals' results need that the message does not carry.
START_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == '"SUCCESSFUL"' then return status end
local ids = redis.call('HGET', KEYS[1], 'worker_ids')
if ids == '[]' then ids = '[' .. ARGV[2] .. ']'
else ids = string.sub(ids, 1, -2) .. ', ' .. ARGV[2] .. ']' end
redis.call('HSET', KEYS[1], 'status', '"RUNNING"', 'last_attempted_at', ARGV[1],
           'worker_ids', ids)
local started = redis.call('HGET', KEYS[1], 'started_at')
if not started or started == 'null' then
    redis.call('HSET', KEYS[1], 'started_at', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HMGET', KEYS[1], 'enqueued_at', 'started_at', 'worker_ids', 'errors')
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
        """Field, JSON value, field, JSON value… as HSET takes them; a field still unset
        is left out (read back as unset)."""
        return _flat({name: value for name, value in vars(self).items() if value is not None})


def result_load(*, result_id: str) -> ResultRecord | None:
    return _record(redis_client().hgetall(KEY.format(id=result_id)))


def result_save(*, result_id: str, record: ResultRecord) -> None:
    _write(result_id, vars(record))


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
    key, values = KEY.format(id=result_id), [settings.TASK_RESULT_TTL, *record.fields()]
    write = _script(ENQUEUE_SCRIPT)
    pool = redis_client().connection_pool
    connection = pool.get_connection()
    try:
        connection.send_command("EVALSHA", write.sha, 1, key, *values)
        try:
            yield record
        except BaseException:
            with suppress(ResponseError):
                connection.read_response()
            redis_client().delete(key)
            raise
        try:
            connection.read_response()
        except NoScriptError:  # Redis restarted since it learnt the script: teach it again
            write(keys=[key], args=values)
    except RedisError:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def result_started(*, result_id: str, task_path: str, args: list[Any],
                   kwargs: dict[str, Any], worker_id: str) -> ResultRecord:
    """RUNNING, one more attempt by `worker_id`, unless the job already succeeded (its
    record comes back SUCCESSFUL and untouched: this delivery is a repeat)."""
    key = KEY.format(id=result_id)
    now = _now()
    start = partial(_script(START_SCRIPT), keys=[key],
                    args=[json.dumps(now), json.dumps(worker_id), settings.TASK_RESULT_TTL])
    reply = start()
    if reply is None:
        result_enqueued(result_id=result_id, task_path=task_path, args=args, kwargs=kwargs,
                        at=None)
        reply = start()
    if not isinstance(reply, list):  # a success: read the whole record, as rarely as that
        record = result_load(result_id=result_id)
        assert record is not None
        return record
    enqueued_at, started_at, worker_ids, errors = (json.loads(value) for value in reply)
    return ResultRecord(task_path=task_path, args=args, kwargs=kwargs, status=RUNNING,
                        enqueued_at=enqueued_at, started_at=started_at, last_attempted_at=now,
                        worker_ids=worker_ids, errors=errors)


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
    values = {"status": record.status, "finished_at": record.finished_at,
              "return_value": record.return_value, "errors": record.errors}
    if status == SUCCESSFUL:
        _write_late(result_id, values)
    else:  # what a retry or the dead-letter handler reads next: written before it reads
        _write(result_id, values)
    return record


def _write(result_id: str, values: dict[str, Any]) -> None:
    key = KEY.format(id=result_id)
    with redis_client().pipeline(transaction=False) as pipe:
        stored: dict[Any, Any] = _encoded(values)  # redis-py's Mapping takes no dict[str, str]
        pipe.hset(key, mapping=stored)
        pipe.expire(key, settings.TASK_RESULT_TTL)
        pipe.execute()


class _LateWrite(threading.local):
    """A connection of this process and thread whose replies are read one write late, and
    the write whose reply is still unread."""

    connection: Any = None
    pid = 0
    unread: tuple[str, dict[str, Any]] | None = None


_late = _LateWrite()


def _write_late(result_id: str, values: dict[str, Any]) -> None:
    """Send a success's write without waiting for Redis's answer, which is read before the
    next one: the worker's hot path pays no round trip for it. A write whose answer is an
    error (Redis restarted between two jobs) is made again through the pool, and so is one
    that cannot be sent; the last one a pool process sends is read when it ends."""
    key = KEY.format(id=result_id)
    try:
        _read_late()
        connection = _late_connection()
        connection.send_packed_command(connection.pack_commands(
            [("HSET", key, *_flat(values)), ("EXPIRE", key, settings.TASK_RESULT_TTL)]))
        _late.unread = (result_id, values)
    except RedisError as error:
        logger.warning("result %s: written through the pool, the late write failed: %s",
                       result_id, error)
        _late.connection = None
        _write(result_id, values)


def _late_connection() -> Any:
    if _late.connection is None or _late.pid != os.getpid():  # none yet, or the parent's
        _late.connection = redis_client().connection_pool.make_connection()
        _late.pid, _late.unread = os.getpid(), None
    return _late.connection


@worker_process_shutdown.connect
def _read_late(**_: Any) -> None:
    if _late.unread is None or _late.pid != os.getpid():
        return
    unread, _late.unread = _late.unread, None
    try:
        for _reply in range(2):  # HSET and EXPIRE
            _late.connection.read_response()
    except RedisError as error:
        logger.warning("result %s: written again, its late write failed: %s",
                       unread[0], error)
        _late.connection = None
        _write(*unread)


@cache
def _script(source: str) -> Script:
    """Sent by its digest once Redis knows it (loaded again after a Redis restart)."""
    return redis_client().register_script(source)


def _encoded(values: dict[str, Any]) -> dict[str, str]:
    """A record's fields as stored: each value as JSON."""
    return {name: json.dumps(value) for name, value in values.items()}


def _flat(values: dict[str, Any]) -> list[str]:
    """`_encoded` as the field, value, field, value… list that HSET and the scripts take."""
    return [item for pair in _encoded(values).items() for item in pair]


def _record(stored: dict[Any, Any]) -> ResultRecord | None:
    if not stored:
        return None
    return ResultRecord(**{redis_text(name): json.loads(value) for name, value in stored.items()})


def _now() -> str:
    return timezone.now().isoformat()
