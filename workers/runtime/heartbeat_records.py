"""Who is alive, as the scrape and the alert checks see it: each worker's last heartbeat
(written by its heartbeat step, workers/runtime/heartbeat.py) and beat's last tick, kept in
the platform's Redis."""

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings

from workers.core.platform_redis import redis_client, redis_text

WORKERS_KEY = "workers:metrics:workers"
BEAT_TICK_KEY = "workers:metrics:beat:tick"
BEAT_LOCK_KEY = "workers:beat:lock"  # held by the beat that sends (workers/runtime/beat.py)


def write_worker_heartbeat(*, nodename: str, queues: Sequence[str], active: int,
                           concurrency: int, pool: str, started_at: float) -> None:
    redis_client().hset(WORKERS_KEY, nodename, json.dumps(
        {"at": time.time(), "queues": list(queues), "active": active,
         "concurrency": concurrency, "pool": pool, "started_at": started_at}))


def forget_worker_heartbeat(*, nodename: str) -> None:
    """A worker that stopped on purpose (a deploy, a scale-down) is gone, not lost: no red
    row on the console, no `celery_worker_up 0` for a day."""
    redis_client().hdel(WORKERS_KEY, nodename)


def read_worker_heartbeats() -> dict[str, dict[str, Any]]:
    """Each worker's last heartbeat (at, queues, active); forgets workers silent for longer
    than METRICS_HOST_TTL."""
    client = redis_client()
    beats = {redis_text(name): json.loads(raw) for name, raw in client.hgetall(WORKERS_KEY).items()}
    gone = [name for name, beat in beats.items()
            if beat["at"] < time.time() - settings.METRICS_HOST_TTL]
    if gone:
        client.hdel(WORKERS_KEY, *gone)
    return {name: beat for name, beat in beats.items() if name not in gone}


def worker_is_up(beat: dict[str, Any], *, now: float) -> bool:
    """A heartbeat younger than METRICS_WORKER_UP_AGE: what `celery_worker_up` and the
    "no live worker" alert both count."""
    return now - beat["at"] <= settings.METRICS_WORKER_UP_AGE


def live_workers_by_queue(beats: dict[str, dict[str, Any]], *, queues: Iterable[str],
                          now: float) -> dict[str, int]:
    """How many workers that are up consume each of `queues`."""
    live = dict.fromkeys(queues, 0)
    for beat in beats.values():
        if worker_is_up(beat, now=now):
            for queue in beat["queues"]:
                if queue in live:
                    live[queue] += 1
    return live


def write_beat_tick() -> None:
    redis_client().set(BEAT_TICK_KEY, time.time())


def read_beat_tick() -> float | None:
    raw = redis_client().get(BEAT_TICK_KEY)
    return float(raw) if raw is not None else None


def beat_lock_holder() -> str | None:
    """host:pid of the beat that holds the lock and sends the schedule, or None."""
    raw = redis_client().get(BEAT_LOCK_KEY)
    return redis_text(raw) if raw is not None else None
