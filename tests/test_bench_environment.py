"""The benchmarks' environment stays in their own processes."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SHOW = ("import os; from config.celery import app; "
        "print(os.environ['CELERY_BROKER_URL'], app.conf.broker_url, sep='\\n')")


def run(code: str, env: dict[str, str]) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=env, check=True)
    return result.stdout.split()


def test_a_worker_importing_the_bench_tasks_keeps_its_broker():
    """As `TASK_MODULES=bench.tasks` has a worker do, after its settings are read: it used
    to move the process to the bench's Redis db 13 without a word."""
    broker = "redis://127.0.0.1:6379/7"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "CELERY_BROKER_URL": broker}
    assert run("import django; django.setup(); import bench.tasks; " + SHOW, env) == [
        broker, broker]
    # The bench's own process still takes the bench's broker.
    bench_broker, *seen = run("from bench.probes import BROKER_URL; print(BROKER_URL); "
                              + SHOW, env)
    assert seen == [bench_broker, bench_broker] != [broker, broker]
