"""The kernel's table of this machine's TCP sockets (/proc/net/tcp and tcp6), for tests
that must see a socket's state rather than guess it from time: who listens on a port, and
what a stopped server has not read yet."""

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"
ESTABLISHED = "01"


@dataclass(frozen=True)
class TcpSocket:
    address: str  # the local address, as inet_ntop writes it
    port: int  # the local port
    state: str  # the kernel's code: LISTEN, ESTABLISHED, ...
    unread: int  # bytes received and not yet read by the socket's owner


def tcp_sockets() -> Iterator[TcpSocket]:
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, _, state, queues = line.split()[1:5]
            address, _, port_hex = local.partition(":")
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            yield TcpSocket(address=socket.inet_ntop(family, words), port=int(port_hex, 16),
                            state=state, unread=int(queues.split(":")[1], 16))
