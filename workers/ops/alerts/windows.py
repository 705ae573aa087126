"""Repeat windows in Redis: the first occurrence of a key alerts, repeats are counted.

A sorted set holds each open window's key scored by when it ends; a hash counts the
repeats inside it. Both steps are Lua scripts, so two processes failing the same way at
the same instant still open one window. When a window ends with repeats, a digest is due
and a new window opens (a failure that keeps happening gets one digest per window); with
none, it closes, and the next occurrence alerts afresh. A Redis restart forgets the
windows: at most one extra alert per key.
"""

import time

from django.conf import settings

from workers.core.platform_redis import redis_client

WINDOWS_KEY = "workers:alerts:windows"
REPEATS_KEY = "workers:alerts:repeats"
WATCHING_KEY = "workers:alerts:watching-since"

_OPEN_OR_COUNT = """
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 1 then return 1 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 0
"""

_CLOSE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local out = {}
for _, key in ipairs(due) do
  local repeats = tonumber(redis.call('HGET', KEYS[2], key) or '0')
  redis.call('HDEL', KEYS[2], key)
  if repeats > 0 then
    redis.call('ZADD', KEYS[1], ARGV[2], key)
  else
    redis.call('ZREM', KEYS[1], key)
  end
  table.insert(out, key)
  table.insert(out, repeats)
end
return out
"""


def window_seconds() -> float:
    return settings.ALERTS_REPEAT_MINUTES * 60


def window_open_or_count(*, key: str, now: float | None = None) -> bool:
    """True if this occurrence opened a window (alert now), False if it was counted."""
    ends = (now or time.time()) + window_seconds()
    client = redis_client()
    return bool(client.eval(_OPEN_OR_COUNT, 2, WINDOWS_KEY, REPEATS_KEY, key, ends))


def windows_close_due(*, now: float | None = None) -> dict[str, int]:
    """Windows that ended by `now`, each with its repeats (those with repeats reopen)."""
    now = now or time.time()
    client = redis_client()
    flat = client.eval(_CLOSE_DUE, 2, WINDOWS_KEY, REPEATS_KEY, now, now + window_seconds())
    return {key.decode(): int(repeats) for key, repeats in zip(flat[::2], flat[1::2],
                                                                strict=True)}


def watching_since(*, now: float) -> float:
    """When the checks first ran against this Redis (set now if never)."""
    client = redis_client()
    client.set(WATCHING_KEY, now, nx=True)
    return float(client.get(WATCHING_KEY) or now)
