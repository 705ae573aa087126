"""The error of every attempt of a job, kept while it is being retried, and the jobs that
wait for a retry now.

Without them a job that timed out twice and then hit a validation error would show only
the validation error. Each retry appends its error to a Redis list keyed by the task id
and enters the job in RETRYING_KEY (due time) and RETRYING_INFO_KEY (what the console
shows), in one round trip; the dead-letter hand-off takes the list with it, and a job that
succeeds leaves its list to expire. The job leaves the retrying set when a later attempt
ends, however it ends; one whose worker died is forgotten once it is overdue by more than
a redelivery can take.
"""

import json
import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from workers.core.platform_redis import redis_client, redis_text
from workers.core.redaction import hide_values

ATTEMPTS_KEY = "workers:attempts:"
RETRYING_KEY = "workers:retrying"  # task id -> when its next attempt is due (Unix time)
RETRYING_INFO_KEY = "workers:retrying:info"  # task id -> task, queue, attempt, error
MESSAGE_LIMIT = 2000


def attempt_error_push(*, task_id: str, task_name: str, queue: str, attempt: int,
                       exception: BaseException, due_at: float, hidden: Sequence[str]) -> None:
    """Record a failed attempt that will be retried; `hidden`: the call's secret arguments
    (`call_secrets`), kept out of the message as the dead letter keeps them out."""
    key = ATTEMPTS_KEY + task_id
    entry = {"attempt": attempt, "at": time.time(),
             "exception_type": f"{type(exception).__module__}.{type(exception).__qualname__}",
             "message": hide_values(str(exception), hidden)[:MESSAGE_LIMIT]}
    pipe = redis_client().pipeline(transaction=False)
    pipe.rpush(key, json.dumps(entry))
    pipe.expire(key, settings.TASK_RETRY_BACKOFF_MAX * (settings.TASK_MAX_RETRIES + 1) + 86400)
    pipe.zadd(RETRYING_KEY, {task_id: due_at})
    pipe.hset(RETRYING_INFO_KEY, task_id, json.dumps(
        {**entry, "task_id": task_id, "task": task_name, "queue": queue, "due_at": due_at}))
    pipe.execute()


def retry_over(*, task_id: str) -> None:
    """The job's retried attempt ended: it no longer waits for one."""
    pipe = redis_client().pipeline(transaction=False)
    pipe.zrem(RETRYING_KEY, task_id)
    pipe.hdel(RETRYING_INFO_KEY, task_id)
    pipe.execute()


def retrying_now(*, now: float, limit: int) -> list[dict[str, Any]]:
    """The jobs waiting for a retry, soonest due first, at most `limit`."""
    client = _forget_lost(now=now)
    task_ids = [redis_text(raw) for raw in client.zrange(RETRYING_KEY, 0, limit - 1)]
    if not task_ids:
        return []
    return [json.loads(raw) for raw in client.hmget(RETRYING_INFO_KEY, task_ids) if raw]


def retrying_by_queue(*, now: float) -> dict[str, int]:
    """How many jobs wait for a retry, by queue: the console's "Retrying now", counted."""
    counts: dict[str, int] = {}
    for raw in _forget_lost(now=now).hvals(RETRYING_INFO_KEY):
        queue = json.loads(raw).get("queue") or ""
        counts[queue] = counts.get(queue, 0) + 1
    return counts


def _forget_lost(*, now: float) -> Any:
    """Forget retries overdue for longer than a lost worker's message takes to come back
    (their job is running again, or dead-lettered); the client, for what follows."""
    client = redis_client()
    lost_before = now - settings.BROKER_VISIBILITY_TIMEOUT - settings.TASK_TIME_LIMIT
    lost = client.zrangebyscore(RETRYING_KEY, "-inf", lost_before)
    if lost:
        client.zrem(RETRYING_KEY, *lost)
        client.hdel(RETRYING_INFO_KEY, *lost)
    return client


def attempt_errors_take(*, task_id: str) -> list[dict]:
    """The job's earlier errors, oldest first; removed from Redis."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.lrange(ATTEMPTS_KEY + task_id, 0, -1)
    pipe.delete(ATTEMPTS_KEY + task_id)
    entries, _ = pipe.execute()
    return [json.loads(entry) for entry in entries]
