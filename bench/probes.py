"""What the timed tasks of both workers record: plain Redis, no Django, no Celery."""

import os
import time
from functools import cache

import redis

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
LATENCY_KEY = "bench:latency"
DONE_KEY = "bench:done"


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(BROKER_URL)


def record_start(sent_at: float) -> None:
    """Enqueue-to-start delay of one probe; sender and worker share this machine's clock."""
    _redis().rpush(LATENCY_KEY, time.time() - sent_at)


def record_done() -> None:
    _redis().incr(DONE_KEY)
