"""A host of the test's own on this machine: a network namespace whose link to the services
(PostgreSQL, Redis, RabbitMQ) the test can cut and heal, for a worker running inside it.

The namespace reaches this machine's services through a veth pair: its side has
`address`, this side `gateway`, where a socat relay per service port forwards to the
service on loopback (the services listen on loopback only). A cut drops the namespace's
packets to and from one service port, both ways, with no reset: what a network partition
looks like to both ends. Needs root (iproute2, iptables).
"""

import contextlib
import itertools
import os
import signal
import subprocess
from urllib.parse import urlsplit, urlunsplit

from tests.polling import poll_until

#: Each host gets its own /30 of this range (10.203.N.0/30), N from a counter per run.
_SUBNETS = itertools.count(os.getpid() % 200)


class IsolatedHost:
    """A network namespace reaching `ports` of this machine's loopback through a link the
    test may cut per port (`cut`, `heal`)."""

    def __init__(self, *, ports: tuple[int, ...]):
        number = next(_SUBNETS) % 250
        self.name = f"fault-host-{os.getpid()}-{number}"
        self.gateway, self.address = f"10.203.{number}.1", f"10.203.{number}.2"
        self.ports = ports
        self._outer = f"vf{os.getpid() % 100000}h{number}"
        self._relays: list[subprocess.Popen] = []
        self._cut: set[int] = set()

    def start(self) -> None:
        inner = self._outer + "i"
        for command in (
                ["ip", "netns", "add", self.name],
                ["ip", "link", "add", self._outer, "type", "veth", "peer", "name", inner],
                ["ip", "link", "set", inner, "netns", self.name],
                ["ip", "addr", "add", f"{self.gateway}/30", "dev", self._outer],
                ["ip", "link", "set", self._outer, "up"],
                *(self.inside(*args) for args in (
                    ["ip", "addr", "add", f"{self.address}/30", "dev", inner],
                    ["ip", "link", "set", inner, "up"],
                    ["ip", "link", "set", "lo", "up"]))):
            subprocess.run(command, check=True, capture_output=True, timeout=30)
        for port in self.ports:
            self._relays.append(subprocess.Popen(  # a child per connection, in its group
                ["socat", f"TCP-LISTEN:{port},bind={self.gateway},fork,reuseaddr",
                 f"TCP:127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True))
        if not poll_until(self._relaying, timeout=30):
            raise RuntimeError(f"the relays of {self.name} did not start")

    def inside(self, *command: str) -> list[str]:
        """`command` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def url(self, url: str) -> str:
        """A service URL as the namespace reaches it (loopback replaced by the gateway);
        every node of a list (`a;b`)."""
        return ";".join(self._through_gateway(each) for each in url.split(";"))

    def cut(self, port: int) -> None:
        """Drop every packet between the namespace and `port`, both ways, from now on."""
        for rule in self._rules(port):
            subprocess.run(self.inside("iptables", "-I", *rule), check=True,
                           capture_output=True, timeout=30)
        self._cut.add(port)

    def heal(self, port: int) -> None:
        for rule in self._rules(port):
            subprocess.run(self.inside("iptables", "-D", *rule), check=True,
                           capture_output=True, timeout=30)
        self._cut.discard(port)

    def remove(self) -> None:
        for relay in self._relays:  # and the connections it relays (database sessions)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(relay.pid, signal.SIGKILL)
            relay.wait(timeout=10)
        subprocess.run(["ip", "link", "del", self._outer], capture_output=True, timeout=30,
                       check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30,
                       check=False)

    def _rules(self, port: int) -> list[list[str]]:
        return [["OUTPUT", "-p", "tcp", "-d", self.gateway, "--dport", str(port), "-j", "DROP"],
                ["INPUT", "-p", "tcp", "-s", self.gateway, "--sport", str(port), "-j", "DROP"]]

    def _relaying(self) -> bool:
        return all(subprocess.run(
            self.inside("bash", "-c", f"exec 3<>/dev/tcp/{self.gateway}/{port}"),
            capture_output=True, timeout=30, check=False).returncode == 0
            for port in self.ports)

    def _through_gateway(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            return url
        netloc = parts.netloc.rsplit("@", 1)
        host_port = netloc[-1].replace(parts.hostname, self.gateway, 1)
        return urlunsplit(parts._replace(netloc="@".join([*netloc[:-1], host_port])))
