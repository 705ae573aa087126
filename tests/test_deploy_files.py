"""docker-compose.yml, the Procfile and the Dockerfile agree with each other and with settings."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from config.celery import app
from tests.fixtures import project_tasks
from workers.api.routing import queue_for

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ("web", "worker-critical", "worker-bulk", "beat", "flower")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_compose_and_procfile_run_the_same_commands():
    services = compose()["services"]
    assert set(procfile()) == set(PROCESSES)
    for name, command in procfile().items():
        assert services[name]["command"] == command, name


def test_docker_compose_accepts_the_file():
    assert shutil.which("docker-compose"), "install docker-compose (apt-get install docker-compose)"
    result = subprocess.run(["docker-compose", "config", "--quiet"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env=os.environ | {"SECRET_KEY": "x", "FLOWER_BASIC_AUTH": "a:b"})
    assert result.returncode == 0, result.stderr


def test_worker_grace_period_outlasts_the_longest_hard_limit_on_its_queue():
    services = compose()["services"]
    for queue in ("critical", "bulk"):
        longest = max((task.time_limit or app.conf.task_time_limit)
                      for task in project_tasks() if queue_for(task.name) == queue)
        grace = services[f"worker-{queue}"]["stop_grace_period"]
        assert int(grace.rstrip("s")) > longest, queue


def test_redis_keeps_jobs_across_restarts_and_never_evicts_them():
    command = compose()["services"]["redis"]["command"]
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_every_service_has_a_healthcheck_or_depends_on_healthy_ones():
    services = compose()["services"]
    for name in ("web", "redis", "postgres", "worker-critical", "worker-bulk", "beat"):
        assert "healthcheck" in services[name], name
    for name in PROCESSES:
        conditions = {dep["condition"] for dep in services[name]["depends_on"].values()}
        assert conditions <= {"service_healthy", "service_completed_successfully"}, name


def test_worker_and_beat_probes_read_the_heartbeat_file_their_process_writes():
    """No Django or Celery process per probe: the liveness module reads a file's age."""
    services = compose()["services"]
    for name, variable in (("worker-critical", "WORKER_HEARTBEAT_FILE"),
                           ("worker-bulk", "WORKER_HEARTBEAT_FILE"),
                           ("beat", "BEAT_HEARTBEAT_FILE")):
        probe = services[name]["healthcheck"]["test"]
        assert probe[:4] == ["CMD", "python", "-m", "workers.ops.liveness"], name
        assert probe[4] == services[name]["environment"][variable], name


def test_the_image_runs_as_a_non_root_user():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    user_lines = [line for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user_lines
    assert user_lines[-1].split()[1].split(":")[0] not in {"root", "0"}


def test_every_environment_variable_is_documented_in_env_example():
    documented = (ROOT / ".env.example").read_text()
    read = set()
    for path in [ROOT / "config/settings.py", *ROOT.glob("*/**/management/commands/*.py")]:
        read |= set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', path.read_text()))
    assert "SECRET_KEY" in read
    missing = sorted(name for name in read if f"{name}=" not in documented)
    assert not missing, f"add to .env.example: {missing}"
