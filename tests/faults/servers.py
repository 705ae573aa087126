"""Servers of a test's own, to kill and restart: Redis with AOF, a RabbitMQ node, and
PostgreSQL.

Nothing here needs Django, so `make soak` can start them before settings are read.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import redis

from tests.polling import poll_until

#: How long a server may take to answer after it starts before the run gives up.
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own, with AOF on, that the test may kill and restart;
    with `password`, one that asks for it (`url` carries it, as a production URL would)."""

    def __init__(self, directory: Path, *, password: str = ""):
        self.directory = directory
        self.port = free_port()
        self.password = password
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password or None)
        if not poll_until(lambda: _answers(client), timeout=START_TIMEOUT):
            raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, only what the AOF already holds survives."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


#: The RabbitMQ node answering on each AMQP port (private nodes add themselves).
RABBITMQ_NODES = {5672: "rabbit@localhost"}


class PrivateRabbitMQ:
    """A RabbitMQ node of the test's own on spare ports (the distribution's server, run as
    the `rabbitmq` user when the tests run as root), that the test may kill and restart.
    Its quorum queues keep their log on disk, so a restart keeps what was confirmed."""

    def __init__(self):
        # Not under pytest's tmp_path: the server's user must reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="fault-rabbitmq-"))
        self.port = free_port()
        self.node = f"faults-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.process: subprocess.Popen | None = None
        RABBITMQ_NODES[self.port] = self.node

    def start(self) -> None:
        config = self.directory / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        if os.geteuid() == 0:
            shutil.chown(self.directory, "rabbitmq", "rabbitmq")
            shutil.chown(config, "rabbitmq", "rabbitmq")
        env = os.environ | {
            "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()), "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.directory / "pid")}
        self.process = subprocess.Popen(["rabbitmq-server"], env=env, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # await_startup gives up at once on a node epmd does not know yet.
        poll_until(lambda: f"name {self.node.split('@')[0]} " in _epmd_names()
                   or self.process.poll() is not None, timeout=START_TIMEOUT)
        started = subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, "await_startup", "--timeout",
             str(int(START_TIMEOUT))], capture_output=True, text=True,
            timeout=START_TIMEOUT + 30, check=False)
        if started.returncode:
            raise RuntimeError(f"RabbitMQ node {self.node} did not start: {started.stderr}")

    def kill(self) -> None:
        """SIGKILL to the whole node: only what its quorum queues' log holds survives."""
        pid_file = self.directory / "pid"
        if pid_file.exists():  # the Erlang VM, started by `su` out of the wrapper's group
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            pid_file.unlink()
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # epmd forgets a node once its connection drops; wait for that before a restart.
        poll_until(lambda: f"name {self.node.split('@')[0]} " not in _epmd_names(),
                   timeout=START_TIMEOUT)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL server of the test's own (the server's binaries from the distribution,
    run as the `postgres` user when the tests run as root), that the test may stop."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="fault-postgres-"))
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.bin = max(Path("/usr/lib/postgresql").glob("*/bin"),
                       key=lambda path: int(path.parent.name))
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", "data", "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        self._run("pg_ctl", "-D", "data", "-l", "server.log", "-w", "start", "-o",
                  f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off")

    def stop(self) -> None:
        """Immediate shutdown: what a crashed or unreachable server looks like to clients."""
        self._run("pg_ctl", "-D", "data", "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        if (self.directory / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", "data", "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_postgres, str(self.bin / program), *args], cwd=self.directory,
                       check=check, capture_output=True, timeout=START_TIMEOUT)


def _epmd_names() -> str:
    return subprocess.run(["epmd", "-names"], capture_output=True, text=True, timeout=30,
                          check=False).stdout


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
