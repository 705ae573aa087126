"""`manage.py flower` listens on loopback unless FLOWER_ADDRESS says otherwise (under
`make dev`, the Procfile's Flower used to answer on every interface of the machine), and
credentials Flower cannot compare are refused, not answered with a 500."""

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.faults.servers import free_port
from tests.fixtures import ROOT, wait_for
from tests.tcp_sockets import LISTEN, tcp_sockets

CREDENTIALS = "ops:long-enough-secret"


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port`, IPv4 and IPv6."""
    return {tcp.address for tcp in tcp_sockets() if tcp.state == LISTEN and tcp.port == port}


def status(url: str, login: bytes) -> int | None:
    request = urllib.request.Request(
        url, headers={"Authorization": "Basic " + base64.b64encode(login).decode()})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@pytest.fixture(scope="module")
def flower() -> Iterator[tuple[str, int]]:
    """`manage.py flower` with nothing said about its address: (base URL, port)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_ADDRESS"} | {
        "ENV_FILE": "", "FLOWER_BASIC_AUTH": CREDENTIALS, "FLOWER_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "manage.py", "flower"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or status(
            url + "/healthcheck", CREDENTIALS.encode()) is not None, what="Flower to answer")
        assert process.poll() is None, "Flower exited"
        yield url, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_flower_listens_on_loopback_only_by_default(flower):
    _, port = flower
    assert listening_addresses(port) == {"127.0.0.1"}


def test_credentials_flower_cannot_compare_are_refused_not_a_500(flower):
    url, _ = flower
    assert status(url + "/healthcheck", "ops:pässwörd".encode()) == 401
    assert status(url + "/", "öps:long-enough-secret".encode()) == 401
    assert status(url + "/healthcheck", CREDENTIALS.encode()) == 200
