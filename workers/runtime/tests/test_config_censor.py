"""The configuration a worker reports over the broker (Flower's Config tab and worker page,
`celery inspect conf`, `report` and `stats`) carries no secret: not the broker's password,
not the Sentinels', not Flower's login."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import Celery

from tests.faults.servers import PrivateRedis, PrivateRedisGroup
from tests.fixtures import ROOT, wait_for

WORKER = "censored@test"
BROKER_PASSWORD = "broker-password-in-the-url"
#: Settings a deployment fills with secrets that Celery's own mask let through.
SECRETS = {
    "FLOWER_BASIC_AUTH": "ops:flower-login-secret",
    "SENTRY_DSN": "http://sentry-dsn-key@127.0.0.1:9/1",
    "ALERTS_SLACK_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/webhook-secret",
    "FLOWER_PUBLIC_URL": "https://ops:public-url-secret@flower.example.com",
}


@contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "critical",
             "-c", "1", "-n", WORKER, "-l", "info", "--without-heartbeat",
             "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        print(log.read_text()[-3000:])  # shown by pytest only when the test failed


@pytest.fixture
def worker_on_redis_with_password(process_env, tmp_path) -> Iterator[str]:
    """A worker on a redis-server that asks for a password, with secrets in its
    environment; yields the broker's URL (password included)."""
    broker = PrivateRedis(tmp_path, password=BROKER_PASSWORD)
    broker.start()
    try:
        with worker(process_env | {"CELERY_BROKER_URL": broker.url, **SECRETS},
                    tmp_path / "worker.log"):
            yield broker.url
    finally:
        broker.kill()


def inspector(broker_url: str) -> Celery:
    """An app of its own: control commands go out through the app's producer pool, which
    for the project's app is the session's broker. (Its broker_url would lose to this
    process's CELERY_BROKER_URL variable; the read and write URLs win over it.)"""
    client = Celery("inspector", set_as_current=False)
    client.conf.update(broker_read_url=broker_url, broker_write_url=broker_url)
    return client


def test_the_config_a_worker_reports_carries_no_secret(worker_on_redis_with_password):
    broker_url = worker_on_redis_with_password
    # An app of its own: control commands go out through the app's producer pool, which
    # for the project's app is the session's broker. (Its broker_url would lose to this
    # process's CELERY_BROKER_URL variable; the read and write URLs win over it.)
    client = inspector(broker_url)
    try:
        wait_for(lambda: client.control.ping(destination=[WORKER], timeout=0.5),
                 what="the worker to answer")
        inspect = client.control.inspect(destination=[WORKER], timeout=10)
        conf = inspect.conf(with_defaults=False)[WORKER]
        everything = inspect.conf(with_defaults=True)[WORKER]
        report = inspect.report()[WORKER]
        stats = inspect.stats()[WORKER]
    finally:
        client.close()

    for shown in (json.dumps(conf), json.dumps(everything), json.dumps(report),
                  json.dumps(stats)):
        assert BROKER_PASSWORD not in shown
        for name, secret in SECRETS.items():
            assert secret.partition("@")[0].rpartition(":")[2] not in shown, name
            assert secret not in shown, name
    port = broker_url.rpartition(":")[2].partition("/")[0]
    # Still what an operator needs: where the broker is, and the Celery settings. The app
    # is configured from the CELERY_* settings alone (config/celery_conf.py): the others,
    # Flower's login and Sentry's DSN among them, are not in the table at all.
    assert conf["CELERY_BROKER_URL"] == f"redis://:********@127.0.0.1:{port}/0"
    assert conf["CELERY_TASK_DEFAULT_QUEUE"] == "critical"
    assert not {"REDIS_URL", "SECRET_KEY", *SECRETS} & set(conf)


SENTINEL_PASSWORD = "sentinel-password-in-the-environment"


def test_the_broker_a_worker_reports_on_sentinels_carries_neither_password(process_env,
                                                                            tmp_path):
    """`inspect stats` (Flower's worker page) shows the broker connection's transport
    options, where the Sentinels' password lives: masked, the rest kept."""
    group = PrivateRedisGroup(tmp_path / "group", sentinel_password=SENTINEL_PASSWORD)
    group.start()
    env = process_env | {"CELERY_BROKER_URL": group.url, "REDIS_SENTINEL_MASTER": group.MASTER,
                         "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD}
    try:
        with worker(env, tmp_path / "worker.log"):
            primary = f"redis://127.0.0.1:{group.primary().port}/0"
            client = inspector(primary)
            try:
                wait_for(lambda: client.control.ping(destination=[WORKER], timeout=0.5),
                         what="the worker to answer")
                stats = client.control.inspect(destination=[WORKER], timeout=10).stats()
            finally:
                client.close()
    finally:
        group.kill()

    broker = stats[WORKER]["broker"]
    assert SENTINEL_PASSWORD not in json.dumps(stats)
    assert broker["transport_options"]["master_name"] == group.MASTER
    assert broker["transport_options"]["sentinel_kwargs"]["password"] == "********"
