"""Flower as `manage.py flower` runs it: every path asks for the dashboard's login."""

import base64
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import tornado.web
from flower import urls

from tests.faults.servers import free_port
from tests.fixtures import ROOT, wait_for

CREDENTIALS = "ops:long-enough-secret"
NOT_GUARDED = ("/static/", "/login", "/logout", ".*")  # files, the login itself, the 404 page


@pytest.fixture(scope="module")
def flower(process_env) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "flower"], cwd=ROOT,
        env=process_env | {"FLOWER_BASIC_AUTH": CREDENTIALS, "FLOWER_PORT": str(port),
                           "FLOWER_ADDRESS": "127.0.0.1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: status(url + "/healthcheck") is not None, what="Flower to answer")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def status(url: str, *, method: str = "GET", login: str | None = None) -> int | None:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


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
