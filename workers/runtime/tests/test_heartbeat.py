"""Worker and beat liveness files, read by a probe that loads neither Django nor Celery."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis

from tests.fixtures import PRIVATE_BROKER, ROOT, wait_for
from workers.runtime.heartbeat_records import WORKERS_KEY


def alive(path: Path, *, max_age: float) -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from workers.ops import liveness; "
         f"code = liveness.main([{str(path)!r}, '--max-age', '{max_age}']); "
         "assert not {'django', 'celery'} & set(sys.modules), 'the probe loaded too much'; "
         "sys.exit(code)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert "the probe loaded too much" not in probe.stderr, probe.stderr
    return probe.returncode == 0


def pid_of(log: Path) -> int:
    """The celery process's pid, from the pidfile it was given beside its log."""
    return int(wait_for(lambda: (log.with_suffix(".pid").read_text().strip()
                                 if log.with_suffix(".pid").exists() else None),
                        what="the pidfile"))


def test_a_worker_is_alive_while_its_event_loop_runs_and_not_when_it_hangs(celery_process,
                                                                           tmp_path):
    heartbeat = tmp_path / "worker.alive"
    assert not alive(heartbeat, max_age=60)  # no file yet
    log = celery_process("worker", "--pidfile", str(tmp_path / "worker-0.pid"),
                         WORKER_HEARTBEAT_FILE=str(heartbeat), WORKER_HEARTBEAT_INTERVAL="0.5")
    wait_for(lambda: alive(heartbeat, max_age=5), what="the worker's heartbeat")

    worker = pid_of(log)
    os.kill(worker, signal.SIGSTOP)  # a main process stuck in a blocking call
    wait_for(lambda: not alive(heartbeat, max_age=3), what="the probe to fail")
    os.kill(worker, signal.SIGCONT)
    wait_for(lambda: alive(heartbeat, max_age=3), what="the heartbeat to resume")


def test_beat_is_alive_while_it_ticks(celery_process, tmp_path):
    heartbeat = tmp_path / "beat.alive"
    log = celery_process("beat", "--pidfile", str(tmp_path / "beat-0.pid"),
                         BEAT_HEARTBEAT_FILE=str(heartbeat), BEAT_LOCK_TTL="3")
    wait_for(lambda: alive(heartbeat, max_age=5), what="beat's heartbeat")

    os.kill(pid_of(log), signal.SIGSTOP)
    wait_for(lambda: not alive(heartbeat, max_age=3), what="the probe to fail")


def test_a_worker_that_shuts_down_leaves_no_heartbeat_to_be_taken_for_lost(celery_process,
                                                                           tmp_path):
    platform = redis.Redis.from_url(PRIVATE_BROKER)
    log = celery_process("worker", "--pidfile", str(tmp_path / "worker-0.pid"),
                         REDIS_URL=PRIVATE_BROKER)
    wait_for(lambda: platform.hexists(WORKERS_KEY, "private-0@test"), what="its heartbeat")

    worker = pid_of(log)
    os.kill(worker, signal.SIGTERM)  # a deploy or a scale-down: a warm shutdown
    wait_for(lambda: not platform.hexists(WORKERS_KEY, "private-0@test"),
             what="the worker to take its heartbeat away as it stops")
