"""Servers of a test's own, to kill and restart: Redis with AOF (alone, or a primary and a
replica watched by three Sentinels), a RabbitMQ node or a cluster of three, and PostgreSQL.

Nothing here needs Django, so `make soak` can start them before settings are read.
"""

import contextlib
import json
import os
import random
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

    def start(self, *, replica_of: int | None = None) -> None:
        """Start (again, after a kill), as a replica of the server on `replica_of` if given."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no",
             *(["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []),
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


class PrivateRedisGroup:
    """A Redis primary, its replica and three Sentinels that fail it over, of the test's
    own: what a team runs when one Redis is not enough (docs/scaling.md).

    The Sentinels call the primary down after DOWN_AFTER_MS without an answer and promote
    the replica; `url` names the Sentinels, as the project's settings would.
    """

    MASTER = "faults"
    DOWN_AFTER_MS = 2000

    def __init__(self, directory: Path, *, sentinel_password: str = ""):
        self.directory = directory
        self.sentinel_password = sentinel_password  # the Sentinels ask for it if given
        self.nodes = [PrivateRedis(directory / name) for name in ("one", "two")]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.url = ";".join(f"sentinel://127.0.0.1:{port}/0" for port in self.sentinel_ports)
        self.sentinels: list[subprocess.Popen] = []

    def start(self) -> None:
        first, second = self.nodes
        for node in self.nodes:
            node.directory.mkdir(parents=True)
        first.start()
        second.start(replica_of=first.port)
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"  # Sentinel rewrites it
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {first.port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} {self.DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.MASTER} 10000\n"
                + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else ""))
            self.sentinels.append(subprocess.Popen(
                ["redis-server", str(config), "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # A failover needs the replica in sync and each Sentinel aware of the others.
        if not poll_until(self._ready, timeout=START_TIMEOUT):
            raise RuntimeError("the Redis group's replica or Sentinels did not come up")

    def primary(self) -> PrivateRedis:
        """The node the Sentinels name primary now (asked of the first that answers)."""
        for port in self.sentinel_ports:
            try:
                _, primary_port = self.sentinel(port).sentinel_get_master_addr_by_name(
                    self.MASTER)
            except redis.ConnectionError:
                continue
            return next(node for node in self.nodes if node.port == int(primary_port))
        raise RuntimeError("no Sentinel answers")

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.sentinel_password or None)

    def replica(self) -> PrivateRedis:
        primary = self.primary()
        return next(node for node in self.nodes if node is not primary)

    def await_failover(self, *, from_node: PrivateRedis) -> PrivateRedis:
        """The new primary, once every Sentinel names it and it accepts writes."""
        def promoted() -> bool:
            try:
                named = {int(self.sentinel(port).sentinel_get_master_addr_by_name(
                    self.MASTER)[1]) for port in self.sentinel_ports}
                role = redis.Redis(port=self.replica_of(from_node).port).role()[0]
            except redis.ConnectionError:
                return False
            return named == {self.replica_of(from_node).port} and role == b"master"
        if not poll_until(promoted, timeout=START_TIMEOUT):
            raise RuntimeError("the Sentinels did not fail the primary over")
        return self.replica_of(from_node)

    def fail_over(self, *, from_node: PrivateRedis,
                  timeout: float = START_TIMEOUT) -> PrivateRedis:
        """Once the Sentinels have promoted the replica of the dead `from_node`, bring it
        back as the new primary's replica (what an orchestrator restarting it does) and
        wait until it has caught up; the new primary."""
        new = self.await_failover(from_node=from_node)
        from_node.start(replica_of=new.port)
        if not poll_until(lambda: self.in_sync(new), timeout=timeout):
            raise RuntimeError("the restarted node did not catch up with the new primary")
        return new

    def replica_of(self, node: PrivateRedis) -> PrivateRedis:
        return next(other for other in self.nodes if other is not node)

    def in_sync(self, primary: PrivateRedis) -> bool:
        """The other node replicates `primary` and has caught up with it."""
        try:
            info = redis.Redis(port=primary.port).info("replication")
        except redis.ConnectionError:
            return False
        replica = info.get("slave0")
        return (info.get("connected_slaves") == 1 and isinstance(replica, dict)
                and replica.get("state") == "online"
                and int(replica["offset"]) >= int(info["master_repl_offset"]))

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()
        for sentinel in self.sentinels:
            if sentinel.poll() is None:
                sentinel.kill()
                sentinel.wait(timeout=10)

    def _ready(self) -> bool:
        if not self.in_sync(self.nodes[0]):
            return False
        try:
            for port in self.sentinel_ports:
                client = self.sentinel(port)
                if (len(client.sentinel_slaves(self.MASTER)) != 1
                        or len(client.sentinel_sentinels(self.MASTER)) != 2):
                    return False
        except redis.ConnectionError:
            return False
        return True


#: The RabbitMQ node answering on each AMQP port (private nodes add themselves).
RABBITMQ_NODES = {5672: "rabbit@localhost"}


class PrivateRabbitMQ:
    """A RabbitMQ node of the test's own on spare ports (the distribution's server, run as
    the `rabbitmq` user when the tests run as root), that the test may kill and restart.
    Its quorum queues keep their log on disk, so a restart keeps what was confirmed."""

    def __init__(self, *, peer_address: str = "", config: str = ""):
        """`peer_address`: a loopback address of its own (127.0.0.x) that the node's
        connections to other nodes come from, so a test can tell them apart and cut them;
        `config`: more rabbitmq.conf lines."""
        # Not under pytest's tmp_path: the server's user must reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="fault-rabbitmq-"))
        self.port = free_port()
        self.dist_port = free_port()  # where other nodes (and rabbitmqctl) reach it
        self.peer_address = peer_address
        self.config = config
        self.node = f"faults-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.process: subprocess.Popen | None = None
        RABBITMQ_NODES[self.port] = self.node

    def start(self) -> None:
        config = self.directory / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n{self.config}")
        if os.geteuid() == 0:
            shutil.chown(self.directory, "rabbitmq", "rabbitmq")
            shutil.chown(config, "rabbitmq", "rabbitmq")
        env = os.environ | {
            "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.directory / "pid")}
        if self.peer_address:
            ip = "{" + self.peer_address.replace(".", ",") + "}"
            env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = (
                f"-kernel inet_dist_connect_options [{{ip,{ip}}}] -kernel net_ticktime 10")
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

    def stop(self) -> None:
        """A clean shutdown (what a rolling restart does): the node hands its work over."""
        self.ctl("shutdown")
        if self.process:
            self.process.wait(timeout=START_TIMEOUT)
        poll_until(lambda: f"name {self.node.split('@')[0]} " not in _epmd_names(),
                   timeout=START_TIMEOUT)

    def ctl(self, *args: str) -> str:
        """`rabbitmqctl` against this node; raises RuntimeError if it fails."""
        result = subprocess.run(["rabbitmqctl", "-q", "-n", self.node, *args],
                                capture_output=True, text=True, timeout=START_TIMEOUT,
                                check=False)
        if result.returncode:
            raise RuntimeError(f"rabbitmqctl -n {self.node} {' '.join(args)}: "
                               f"{result.stderr.strip()}")
        return result.stdout

    def remove(self, *, logs_to: Path | None = None) -> None:
        """Kill the node and delete its files; its logs first copied under `logs_to`."""
        self.kill()
        if logs_to is not None and (self.directory / "log").is_dir():
            shutil.copytree(self.directory / "log", logs_to / self.node, dirs_exist_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateRabbitMQCluster:
    """Three RabbitMQ nodes of the test's own joined in one cluster, so the template's
    quorum queues keep a member on each: what a team runs when one node is not enough.
    `url` lists every node, as the project's settings would (kombu fails over in turn)."""

    SIZE = 3
    #: What a production cluster should run with (docs/scaling.md): a node that loses
    #: sight of the majority pauses and closes its clients' connections, which move on.
    CONFIG = "cluster_partition_handling = pause_minority\n"

    def __init__(self):
        self.nodes = [PrivateRabbitMQ(config=self.CONFIG, peer_address="127.{}.{}.{}".format(
            *random.sample(range(2, 250), 3))) for _ in range(self.SIZE)]
        self.url = ";".join(node.url for node in self.nodes)
        self.partitioned: set[str] = set()

    def start(self) -> None:
        first, *others = self.nodes
        for node in self.nodes:
            node.start()
        for node in others:
            for command in (["stop_app"], ["join_cluster", first.node], ["start_app"]):
                node.ctl(*command)
        if not poll_until(lambda: self.running() == {node.node for node in self.nodes},
                          timeout=START_TIMEOUT):
            raise RuntimeError("the RabbitMQ nodes did not form one cluster")

    def partition(self, node: "PrivateRabbitMQ") -> None:
        """Cut `node` off from the other nodes (not from its clients): every packet to its
        distribution port, and every packet it sends from its peer address, is dropped."""
        for rule in self._partition_rules(node):
            subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True,
                           timeout=30)
        self.partitioned.add(node.node)

    def heal(self, node: "PrivateRabbitMQ") -> None:
        for rule in self._partition_rules(node):
            subprocess.run(["iptables", "-D", *rule], check=True, capture_output=True,
                           timeout=30)
        self.partitioned.discard(node.node)

    def _partition_rules(self, node: "PrivateRabbitMQ") -> list[list[str]]:
        return [["OUTPUT", "-p", "tcp", "--dport", str(node.dist_port), "-j", "DROP"],
                ["OUTPUT", "-p", "tcp", "-s", node.peer_address, "-j", "DROP"]]

    def running(self) -> set[str]:
        """The nodes the cluster counts as running, asked of the first node that answers
        (a node partitioned away is not asked: rabbitmqctl cannot reach it)."""
        for node in self.nodes:
            if node.node in self.partitioned:
                continue
            try:
                status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
            except (RuntimeError, subprocess.TimeoutExpired, ValueError):
                continue
            return set(status.get("running_nodes", []))
        return set()

    def node_named(self, name: str) -> "PrivateRabbitMQ":
        return next(node for node in self.nodes if node.node == name)

    def remove(self, *, logs_to: Path | None = None) -> None:
        for node in self.nodes:
            if node.node in self.partitioned:
                self.heal(node)
            node.remove(logs_to=logs_to)


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
