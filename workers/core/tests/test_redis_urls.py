"""Clients from the project's Redis URLs, and settings that refuse a Sentinel URL without
the group's name (the fault tests run a real Sentinel group: tests/faults)."""

import subprocess
import sys

import pytest
from redis.sentinel import SentinelConnectionPool

from tests.fixtures import ROOT
from workers.core.redis_urls import redis_from_url, sentinel_hosts


def test_a_sentinel_url_names_every_sentinel_and_the_primary_s_database_and_password():
    url = "sentinel://:s%40cret@10.0.0.1:26380/3;sentinel://10.0.0.2;sentinel://10.0.0.3:1"

    client = redis_from_url(url, master_name="jobs", socket_connect_timeout=1)

    assert sentinel_hosts(url) == [("10.0.0.1", 26380), ("10.0.0.2", 26379), ("10.0.0.3", 1)]
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "jobs"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (3, "s@cret")
    assert [sentinel.connection_pool.connection_kwargs["port"]
            for sentinel in pool.sentinel_manager.sentinels] == [26380, 26379, 1]


def test_a_plain_url_gives_a_plain_client_and_a_sentinel_url_needs_its_group():
    assert not isinstance(redis_from_url("redis://127.0.0.1:6379/4").connection_pool,
                          SentinelConnectionPool)
    with pytest.raises(ValueError, match="REDIS_SENTINEL_MASTER"):
        redis_from_url("sentinel://127.0.0.1:26379")
    with pytest.raises(ValueError, match="not a sentinel"):
        sentinel_hosts("sentinel://a:1;redis://b:2")


def settings_with(**env: str) -> subprocess.CompletedProcess:
    """The project's settings, read by a process of their own from `env`."""
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import "
         "settings as s; print(s.CELERY_BROKER_TRANSPORT, "
         "s.CELERY_BROKER_TRANSPORT_OPTIONS.get('master_name'), "
         "s.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS.get('master_name'), s.REDIS_URL)"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings",
             "DJANGO_ENV": "dev", **env})


def test_settings_take_a_sentinel_url_with_its_group_and_refuse_one_without():
    url = "sentinel://127.0.0.1:26379;sentinel://127.0.0.2:26379"

    group = settings_with(CELERY_BROKER_URL=url, REDIS_SENTINEL_MASTER="jobs")
    nameless = settings_with(CELERY_BROKER_URL=url)
    platform_only = settings_with(CELERY_BROKER_URL="amqp://127.0.0.1//", REDIS_URL=url,
                                  REDIS_SENTINEL_MASTER="jobs")

    assert group.stdout.split() == ["workers.runtime.redis_transport:SentinelTransport",
                                    "jobs", "jobs", url], group.stderr
    assert nameless.returncode != 0
    assert "a sentinel:// URL needs REDIS_SENTINEL_MASTER" in nameless.stderr
    assert platform_only.stdout.split() == ["None", "None", "jobs", url], platform_only.stderr
