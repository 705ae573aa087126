"""Flower as `manage.py flower` runs it: every path asks for the dashboard's login, and
the Broker tab reads the queues of the platform's Redis transport."""

import base64
import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import tornado.web
from flower import urls

from tests.faults.servers import PrivateRedis, free_port
from tests.fixtures import ROOT, publish_task, wait_for
from tests.tcp_sockets import ESTABLISHED, tcp_sockets

CREDENTIALS = "ops:long-enough-secret"
NOT_GUARDED = ("/static/", "/login", "/logout", ".*")  # files, the login itself, the 404 page
BROKER_PASSWORD = "broker-password-in-the-url"


@contextlib.contextmanager
def running_flower(env: dict[str, str]) -> Iterator[str]:
    """`manage.py flower` with `env`, until the block ends; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "flower"], cwd=ROOT,
        env=env | {"FLOWER_BASIC_AUTH": CREDENTIALS, "FLOWER_PORT": str(port),
                   "FLOWER_ADDRESS": "127.0.0.1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: status(url + "/healthcheck") is not None, what="Flower to answer")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()  # not left behind for the tests that follow
            process.wait()
            raise


@pytest.fixture(scope="module")
def flower(process_env) -> Iterator[str]:
    with running_flower(process_env) as url:
        yield url


@pytest.fixture
def flower_on_redis_with_password(process_env, tmp_path) -> Iterator[tuple[str, str]]:
    """Flower on a redis-server of its own that asks for a password, so the queues hold
    only what the test puts there: (Flower's URL, the broker's URL)."""
    broker = PrivateRedis(tmp_path, password=BROKER_PASSWORD)
    broker.start()
    try:
        with running_flower(process_env | {"CELERY_BROKER_URL": broker.url}) as url:
            yield url, broker.url
    finally:
        broker.kill()


def fetch(url: str, *, method: str = "GET", login: str | None = None) -> tuple[int | None, str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None, ""


def status(url: str, *, method: str = "GET", login: str | None = None) -> int | None:
    return fetch(url, method=method, login=login)[0]


def flower_paths() -> list[tuple[str, str]]:
    """(method, path) for every route Flower serves, groups filled with a placeholder."""
    routes = []
    for handler in urls.handlers:
        pattern, view = (handler.regex.pattern.rstrip("$"), handler.target) if isinstance(
            handler, tornado.web.URLSpec) else (handler[0], handler[1])
        if pattern.startswith(NOT_GUARDED):
            continue
        method = "GET" if "get" in vars(view) else "POST"
        routes.append((method, re.sub(r"\(\.[*+]\)", "x", pattern)))
    return routes


def test_every_flower_path_asks_for_the_login(flower):
    paths = flower_paths()
    assert ("GET", "/metrics") in paths
    assert ("GET", "/healthcheck") in paths
    refused = {path: status(flower + path, method=method) for method, path in paths}
    assert set(refused.values()) == {401}, refused


def test_the_login_opens_metrics_and_health(flower):
    assert status(flower + "/metrics", login=CREDENTIALS) == 200
    assert status(flower + "/healthcheck", login=CREDENTIALS) == 200
    assert status(flower + "/metrics", login="ops:wrong-password") == 401


def test_the_broker_tab_and_queue_lengths_read_the_redis_transports_queues(
        flower_on_redis_with_password):
    flower, broker_url = flower_on_redis_with_password
    for n in range(3):
        publish_task(broker_url, "tests.tasks.log_line", f"waiting-{n}")

    code, body = fetch(flower + "/api/queues/length", login=CREDENTIALS)
    assert code == 200, body
    assert json.loads(body) == {"active_queues": [{"name": "bulk", "messages": 0},
                                                  {"name": "critical", "messages": 3}]}
    code, page = fetch(flower + "/broker", login=CREDENTIALS)
    assert code == 200, page
    assert re.search(r"<td>critical</td>\s*<td[^>]*>3</td>", page), page
    assert "redis://" in page
    assert BROKER_PASSWORD not in page


@pytest.fixture
def broker_behind_a_dead_one(tmp_path) -> Iterator[tuple[PrivateRedis, str]]:
    """A redis-server of the test's own, and a failover list whose first URL is a port
    nothing listens on, as during a failover: (the live broker, the list)."""
    broker = PrivateRedis(tmp_path, password=BROKER_PASSWORD)
    broker.start()
    try:
        yield broker, f"redis://:{BROKER_PASSWORD}@127.0.0.1:{free_port()}/0;{broker.url}"
    finally:
        broker.kill()


def test_queue_lengths_come_from_the_broker_of_the_failover_list_that_answers(
        process_env, broker_behind_a_dead_one):
    broker, urls = broker_behind_a_dead_one
    publish_task(broker.url, "tests.tasks.log_line", "waiting")
    with running_flower(process_env | {"CELERY_BROKER_URL": urls,
                                       "REDIS_URL": broker.url}) as flower:
        code, body = fetch(flower + "/api/queues/length", login=CREDENTIALS)
        assert code == 200, body
        assert {"name": "critical", "messages": 1} in json.loads(body)["active_queues"]

        broker.kill()  # no broker left: an answer that says so, not Flower's error page
        code, body = fetch(flower + "/api/queues/length", login=CREDENTIALS)
        assert code == 503, body
        assert BROKER_PASSWORD not in body
        assert status(flower + "/api/queues/length") == 401


def test_flower_stops_while_a_broadcast_to_the_workers_waits_on_its_broker(
        process_env, tmp_path):
    """A broadcast Flower sends from a pool thread (its inspections, its periodic
    enable_events) waits on a broker that stopped answering, or retries one that went
    away, for as long as that lasts: SIGTERM must end Flower all the same."""
    broker = PrivateRedis(tmp_path, password=BROKER_PASSWORD)
    broker.start()
    try:
        with running_flower(process_env | {"CELERY_BROKER_URL": broker.url}) as flower:
            broker.process.send_signal(signal.SIGSTOP)  # listening, never answering
            threading.Thread(target=fetch, args=(flower + "/api/workers?refresh=1",),
                             kwargs={"login": CREDENTIALS}, daemon=True).start()
            wait_for(lambda: unread_bytes(port=broker.port) > 0,
                     what="Flower's inspection to reach the stopped broker")
    finally:
        broker.process.send_signal(signal.SIGCONT)
        broker.kill()


def unread_bytes(*, port: int) -> int:
    """Bytes clients sent to the server listening on `port` that it has not read yet (the
    kernel's receive queues of its connections)."""
    return sum(tcp.unread for tcp in tcp_sockets() if tcp.port == port and tcp.state == ESTABLISHED)
