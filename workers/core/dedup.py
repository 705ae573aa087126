"""Enqueue-time deduplication (BullMQ's `jobId`): one waiting-or-running job per key.

`task.apply_async(..., dedup_key="export:42")` claims the key in Redis for the new task
id; while it is held, the same call returns the holder's result handle and sends
nothing. The worker releases the key when the job ends (success or final failure); a
TTL releases it if the job is lost without ending, e.g. its worker was SIGKILLed and
the message dead-lettered from the main process.
"""

from functools import cache

from redis.commands.core import Script

from workers.core.platform_redis import redis_client, redis_text

# Delete the key only if it still names this task: a later job may own it by now.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def dedup_claim(*, key: str, task_id: str, ttl: int) -> str | None:
    """Claim `key` for `task_id`; return the task id already holding it, or None if claimed."""
    client = redis_client()
    while True:
        if client.set(_redis_key(key), task_id, nx=True, ex=ttl):
            return None
        holder = client.get(_redis_key(key))
        if holder is not None:  # else it expired between the two calls: claim again
            return redis_text(holder)


def dedup_release(*, key: str, task_id: str) -> bool:
    """Free `key` if `task_id` still holds it; True if it did."""
    return bool(_release_script()(keys=[_redis_key(key)], args=[task_id]))


@cache
def _release_script() -> Script:
    return redis_client().register_script(_RELEASE)


def _redis_key(key: str) -> str:
    return f"workers:dedup:{key}"
