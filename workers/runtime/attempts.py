"""The error of every attempt of a job, kept while it is being retried.

Without them a job that timed out twice and then hit a validation error would show only
the validation error. Each retry appends its error to a
Redis list keyed by the task id (one RPUSH); the dead-letter hand-off takes the list
with it, and a job that succeeds leaves its list to expire.
"""

import json
import time

from django.conf import settings

from workers.core.platform_redis import redis_client

ATTEMPTS_KEY = "workers:attempts:"
MESSAGE_LIMIT = 2000


def attempt_error_push(*, task_id: str, attempt: int, exception: BaseException) -> None:
    key = ATTEMPTS_KEY + task_id
    entry = {"attempt": attempt, "at": time.time(),
             "exception_type": f"{type(exception).__module__}.{type(exception).__qualname__}",
             "message": str(exception)[:MESSAGE_LIMIT]}
    pipe = redis_client().pipeline(transaction=False)
    pipe.rpush(key, json.dumps(entry))
    pipe.expire(key, settings.TASK_RETRY_BACKOFF_MAX * (settings.TASK_MAX_RETRIES + 1) + 86400)
    pipe.execute()


def attempt_errors_take(*, task_id: str) -> list[dict]:
    """The job's earlier errors, oldest first; removed from Redis."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.lrange(ATTEMPTS_KEY + task_id, 0, -1)
    pipe.delete(ATTEMPTS_KEY + task_id)
    entries, _ = pipe.execute()
    return [json.loads(entry) for entry in entries]
