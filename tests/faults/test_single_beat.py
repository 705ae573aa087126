"""Two beat processes, the lock holder killed or stopped again and again: every slot of a
due entry is sent once, and the standby takes over."""

import itertools
import signal
import time

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.faults.harness import Ledger, Processes
from tests.fixtures import wait_for
from tests.tasks import BEAT_TICKS
from workers.runtime.beat import BEAT_LOCK_KEY

LOCK_TTL = 3
INTERVAL = 1.0  # seconds between the entry's sends
RESTARTS = (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM)


def sends(test_redis) -> list[float]:
    """When beat published each tick (its `enqueued_at` header), in order."""
    return sorted(float(value) for value in test_redis.lrange(BEAT_TICKS, 0, -1))


def sends_since(test_redis, moment: float) -> list[float]:
    return [t for t in sends(test_redis) if t > moment]


def holder_pid(test_redis) -> int | None:
    token = test_redis.get(BEAT_LOCK_KEY)
    return int(token.rpartition(":")[2]) if token else None


def test_restarting_the_lock_holder_never_sends_a_slot_twice(
        live_workers, processes: Processes, test_redis, tmp_path, record_ledger):
    test_redis.delete(BEAT_TICKS, BEAT_LOCK_KEY)
    every_second = IntervalSchedule.objects.create(every=int(INTERVAL),
                                                   period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="fault-test tick", task="tests.tasks.beat_tick",
                                interval=every_second, queue="critical")
    names = (f"beat-{n}" for n in itertools.count())
    beats = {}

    def start_beat():
        name = next(names)
        beat = processes.spawn(name, ["-m", "celery", "-A", "config", "beat", "-l", "info",
                                      "--pidfile", str(tmp_path / f"{name}.pid")],
                               BEAT_LOCK_TTL=str(LOCK_TTL))
        beats[beat.pid] = beat

    start_beat()
    start_beat()
    wait_for(lambda: len(sends(test_redis)) >= 3, what="three ticks")
    takeovers = []
    for sig in RESTARTS:
        holder = wait_for(lambda: holder_pid(test_redis), what="a lock holder")
        stopped_at = time.time()
        processes.kill_group(beats[holder], sig)
        beats.pop(holder).wait(timeout=120)
        start_beat()  # the restarted one joins as the new standby
        after = wait_for(lambda since=stopped_at: sends_since(test_redis, since),
                         timeout=LOCK_TTL + 60, what="a tick from the new holder")
        takeovers.append(after[0] - stopped_at)
        new_holder = holder_pid(test_redis)
        assert new_holder != holder
        assert new_holder in beats
        wait_for(lambda since=stopped_at: len(sends_since(test_redis, since)) >= 3,
                 what="three ticks after the takeover")

    sent = sends(test_redis)
    doubled = sum(1 for a, b in itertools.pairwise(sent) if b - a < INTERVAL / 2)
    record_ledger(Ledger(fault="two beats, holder restarted 4x (ticks)", sent=len(sent),
                         completed=len(sent), dead_lettered=0, lost=0, doubled=doubled,
                         recovery_seconds=max(takeovers)))
