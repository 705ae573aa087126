"""docker-compose.yml, the Procfile and the Dockerfile agree with each other and with settings."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from config.celery import app
from tests.fixtures import project_tasks
from workers.core.routing import queue_for

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
                            env=os.environ | {"SECRET_KEY": "x", "FLOWER_BASIC_AUTH": "a:b",
                                              "POSTGRES_PASSWORD": "p"})
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
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(),
                                re.MULTILINE))
    read = set()
    for path in [*ROOT.glob("config/settings/*.py"),
                 *ROOT.glob("apps/*/management/commands/*.py"),
                 *ROOT.glob("workers/management/commands/*.py")]:
        read |= set(re.findall(r'(?:env\.\w+|url_setting|positive_int)\(\s*"([A-Z][A-Z0-9_]*)"',
                               path.read_text()))
    assert {"SECRET_KEY", "CELERY_BROKER_URL"} <= read
    missing = sorted(read - documented)
    assert not missing, f"add to .env.example: {missing}"


APP_SERVICES = (*PROCESSES, "migrate")
REQUIRED = {"SECRET_KEY": "s" * 60, "FLOWER_BASIC_AUTH": "ops:long-password",
            "POSTGRES_PASSWORD": "a-database-password"}


def compose_config(env_file: Path, **env: str) -> subprocess.CompletedProcess:
    """`docker-compose config` as `docker compose up` would read it: `env_file` as the
    .env beside it, and `env` as the shell's variables."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(["docker-compose", "--env-file", str(env_file), "config"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=clean | env)


def test_compose_requires_its_secrets(tmp_path):
    empty = tmp_path / ".env"
    empty.touch()
    for name in REQUIRED:
        result = compose_config(empty, **{k: v for k, v in REQUIRED.items() if k != name})
        assert result.returncode != 0, name
        assert f"set {name}" in result.stderr, result.stderr


def test_a_dev_env_file_cannot_make_compose_less_than_production(tmp_path):
    """`make dev` copies .env.example to .env, which compose reads too: the stack still runs
    DJANGO_ENV=production, and production settings refuse the development secrets."""
    dev_env = tmp_path / ".env"
    dev_env.write_text((ROOT / ".env.example").read_text())
    result = compose_config(dev_env, POSTGRES_PASSWORD="a-database-password")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in APP_SERVICES:
        assert services[name]["environment"]["DJANGO_ENV"] == "production", name

    check = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={"PATH": os.environ["PATH"], "ENV_FILE": "",
                         "DJANGO_SETTINGS_MODULE": "config.settings",
                         **services["web"]["environment"]})
    assert check.returncode != 0
    assert "is the development value from .env.example" in check.stderr, check.stderr[-2000:]


def test_compose_app_services_are_confined_and_web_stays_on_loopback(tmp_path):
    empty = tmp_path / ".env"
    empty.touch()
    result = compose_config(empty, **REQUIRED)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000/tcp"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555/tcp"]
    # Inside its container Flower listens on every interface, for the published port.
    assert services["flower"]["environment"]["FLOWER_ADDRESS"] == "0.0.0.0"

    anywhere = compose_config(empty, **REQUIRED, WEB_BIND="0.0.0.0")
    assert yaml.safe_load(anywhere.stdout)["services"]["web"]["ports"] == ["0.0.0.0:8000:8000/tcp"]


def test_the_image_build_s_collectstatic_settings_load():
    """The Dockerfile runs collectstatic with production settings, which refuse a weak key."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    (prefix,) = re.findall(
        r"RUN (DJANGO_ENV=production .*?)\s*\\\n\s*python manage.py collectstatic", dockerfile)
    result = subprocess.run(
        ["sh", "-c", f"{prefix} python manage.py check"], cwd=ROOT, capture_output=True,
        text=True, timeout=60,
        env={"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "ENV_FILE": "",
             "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert result.returncode == 0, result.stderr[-2000:]
