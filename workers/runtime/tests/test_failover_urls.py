"""Every URL of the broker's failover list runs on the configured transport, in a process
as the workers start it (the soak's lost jobs: after a Sentinel failover, workers that had
moved to the list's next URL ran on kombu's stock transport)."""

import subprocess
import sys

import pytest

from tests.fixtures import ROOT

SHOW_TRANSPORTS = """
import django
django.setup()
from config.celery import app
connection = app.connection_for_write()
print(type(connection.transport).__module__, type(connection.transport).__name__)
for url in connection.alt[1:]:
    connection.switch(url)
    print(type(connection.transport).__module__, type(connection.transport).__name__)
"""


def transports(**env: str) -> list[str]:
    """The transport of each URL of the broker's list, as a fresh process resolves it."""
    done = subprocess.run(
        [sys.executable, "-c", SHOW_TRANSPORTS], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings",
             "DJANGO_ENV": "dev", "REDIS_URL": "redis://127.0.0.1:6379/0", **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize(("url", "name"), [
    ("sentinel://127.0.0.1:26379/0;sentinel://127.0.0.2:26379/0;sentinel://127.0.0.3:26379/0",
     "SentinelTransport"),
    ("redis://127.0.0.1:6379/0;redis://127.0.0.2:6379/0", "Transport"),
])
def test_each_url_of_the_list_runs_on_the_atomic_fetch_transport(url: str, name: str):
    assert transports(CELERY_BROKER_URL=url, REDIS_SENTINEL_MASTER="jobs") == [
        f"workers.runtime.redis_transport {name}"] * len(url.split(";"))


def test_kombu_s_stock_transport_stays_stock_when_chosen():
    """BROKER_TRANSPORT=redis (bench/ compares the two) claims nothing."""
    assert transports(CELERY_BROKER_URL="redis://127.0.0.1:6379/0;redis://127.0.0.2:6379/0",
                      BROKER_TRANSPORT="redis") == ["kombu.transport.redis Transport"] * 2
