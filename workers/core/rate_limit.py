"""A rate limit shared by every worker process, kept in Redis.

Celery's own `rate_limit` is per worker process; a provider's "N messages a second" is
for the whole account, so all bulk workers must draw from one budget.
"""

import time
from functools import cache

from redis.commands.core import Script

from workers.core.platform_redis import redis_client

# Take up to `amount` from this second's budget; return how many were granted.
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used)
if grant <= 0 then return 0 end
redis.call('INCRBY', KEYS[1], grant)
redis.call('EXPIRE', KEYS[1], 2)
return grant
"""


def rate_limit_acquire(*, name: str, per_second: int, amount: int) -> int:
    """Block until some of `amount` fits in the current one-second window; return how many.

    Callers send what they were granted and ask again for the rest, so a large batch is
    spread over as many seconds as the limit requires.
    """
    take = _take_script()
    while True:
        now = time.time()
        granted = int(take(keys=[f"workers:rate:{name}:{int(now)}"], args=[amount, per_second]))
        if granted:
            return granted
        time.sleep(max(0.001, 1 - (now % 1)))


@cache
def _take_script() -> Script:
    """Registered once per process; redis-py loads it into Redis on first use (EVALSHA)."""
    return redis_client().register_script(_TAKE)
