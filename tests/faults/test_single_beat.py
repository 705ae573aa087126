"""Two beat processes: each tick fires once; when the lock holder dies the standby takes over."""

import itertools
import time

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.faults.harness import Ledger, Processes
from tests.fixtures import wait_for
from tests.tasks import BEAT_TICKS
from workers.beat import BEAT_LOCK_KEY

LOCK_TTL = 3


def ticks(test_redis) -> list[float]:
    return sorted(float(value) for value in test_redis.lrange(BEAT_TICKS, 0, -1))


def closest_gap(values: list[float]) -> float:
    return min(later - earlier for earlier, later in itertools.pairwise(values))


def start_beat(processes: Processes, name: str, tmp_path):
    return processes.spawn(name, ["-m", "celery", "-A", "config", "beat", "-l", "info",
                                  "--pidfile", str(tmp_path / f"{name}.pid")],
                           BEAT_LOCK_TTL=str(LOCK_TTL))


def test_two_beats_fire_each_tick_once_and_the_standby_takes_over(
        live_workers, processes: Processes, test_redis, tmp_path, record_ledger):
    test_redis.delete(BEAT_TICKS, BEAT_LOCK_KEY)
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="fault-test tick", task="tests.tasks.beat_tick",
                                interval=every_second, queue="critical")
    beats = {beat.pid: beat for beat in (start_beat(processes, "beat-a", tmp_path),
                                         start_beat(processes, "beat-b", tmp_path))}

    wait_for(lambda: len(ticks(test_redis)) >= 8, timeout=30, what="eight ticks")
    holder_pid = int(test_redis.get(BEAT_LOCK_KEY).rpartition(":")[2])
    processes.kill_group(beats[holder_pid])
    killed_at = time.time()
    after_kill = wait_for(lambda: [t for t in ticks(test_redis) if t > killed_at + 0.1],
                          timeout=LOCK_TTL + 10, what="a tick from the standby")
    takeover = after_kill[0] - killed_at
    standby_pid = int(test_redis.get(BEAT_LOCK_KEY).rpartition(":")[2])
    wait_for(lambda: len([t for t in ticks(test_redis) if t > killed_at]) >= 5, timeout=15,
             what="five ticks after the takeover")

    fired = ticks(test_redis)
    doubled = sum(1 for a, b in itertools.pairwise(fired) if b - a < 0.5)
    record_ledger(Ledger(fault="two beats, lock holder SIGKILLed (ticks)", sent=len(fired),
                         completed=len(fired), dead_lettered=0, lost=0, doubled=doubled,
                         recovery_seconds=round(takeover, 2)))
    assert standby_pid != holder_pid
    assert standby_pid in beats
    assert closest_gap(fired) > 0.5, fired
    assert takeover <= LOCK_TTL + 2, f"took {takeover:.1f}s to take over"
