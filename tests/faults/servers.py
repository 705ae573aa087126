"""Servers of a test's own, to kill and restart: Redis with AOF, and PostgreSQL.

Nothing here needs Django, so `make soak` can start them before settings are read.
"""

import os
import shutil
import socket
import subprocess
import tempfile
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
    """A redis-server of the test's own, with AOF on, that the test may kill and restart."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        if not poll_until(lambda: _answers(client), timeout=START_TIMEOUT):
            raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, only what the AOF already holds survives."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


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


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
