"""Worker and beat liveness files, read by a probe that loads neither Django nor Celery."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import ROOT, wait_for

BROKER = "redis://127.0.0.1:6379/10"  # a database of this test's own


def alive(path: Path, *, max_age: float) -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from workers.ops import liveness; "
         f"code = liveness.main([{str(path)!r}, '--max-age', '{max_age}']); "
         "assert not {'django', 'celery'} & set(sys.modules), 'the probe loaded too much'; "
         "sys.exit(code)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert "the probe loaded too much" not in probe.stderr, probe.stderr
    return probe.returncode == 0


@pytest.fixture
def spawn(process_env, transactional_db) -> Iterator:
    started: list[subprocess.Popen] = []

    def start(args: list[str], **env: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", *args],
                                   cwd=ROOT, env=process_env | {"CELERY_BROKER_URL": BROKER,
                                                                **env},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_a_worker_is_alive_while_its_event_loop_runs_and_not_when_it_hangs(spawn, tmp_path):
    heartbeat = tmp_path / "worker.alive"
    assert not alive(heartbeat, max_age=60)  # no file yet
    worker = spawn(["worker", "-Q", "critical", "-c", "1", "-n", "alive@test",
                    "--without-heartbeat", "--without-mingle", "--without-gossip"],
                   WORKER_HEARTBEAT_FILE=str(heartbeat), WORKER_HEARTBEAT_INTERVAL="0.5")
    wait_for(lambda: alive(heartbeat, max_age=5), what="the worker's heartbeat")

    os.kill(worker.pid, signal.SIGSTOP)  # a main process stuck in a blocking call
    wait_for(lambda: not alive(heartbeat, max_age=3), what="the probe to fail")
    os.kill(worker.pid, signal.SIGCONT)
    wait_for(lambda: alive(heartbeat, max_age=3), what="the heartbeat to resume")


def test_beat_is_alive_while_it_ticks(spawn, tmp_path):
    heartbeat = tmp_path / "beat.alive"
    beat = spawn(["beat", "--pidfile", str(tmp_path / "beat.pid")],
                 BEAT_HEARTBEAT_FILE=str(heartbeat), BEAT_LOCK_TTL="3")
    wait_for(lambda: alive(heartbeat, max_age=5), what="beat's heartbeat")

    os.kill(beat.pid, signal.SIGSTOP)
    wait_for(lambda: not alive(heartbeat, max_age=3), what="the probe to fail")
