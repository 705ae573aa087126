"""Fixtures that run real Celery workers, an SMTP server and Redis for the tests."""

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
import redis
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from kombu import Connection
from psycopg.errors import DeadlockDetected

from config.celery import app
from tests.faults.brokers import reset_vhost, vhost_of
from tests.faults.servers import free_port
from tests.polling import poll_until
from tests.smtp_server import RecordingHandler, start_smtp_server
from tests.stripe_server import StripeStandIn
from tests.tasks import FINISHED
from workers.core.models import OutboxMessage

ROOT = Path(__file__).resolve().parent.parent
WORKERS = {"critical": "critical@test", "bulk": "bulk@test"}


#: How long any wait may take before the test fails: long enough for a loaded 2-core
#: machine, short enough to catch a hang. Waits are for events, never for the clock.
HANG = 120.0


def wait_for(predicate: Callable[[], object], *, timeout: float = HANG, what: str = "") -> object:
    """Poll until `predicate` returns something truthy; fail the test after `timeout`."""
    value = poll_until(predicate, timeout=timeout)
    if not value:
        pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
    return value


def project_tasks() -> list:
    """Every task of the project (not the test-only ones), each module imported."""
    app.loader.import_default_modules()
    return [task for name, task in sorted(app.tasks.items()) if not name.startswith("tests.")]


def publisher_connection(broker_url: str) -> Connection:
    """kombu's own Connection (the app's would use this process's broker_transport), with
    publisher confirms on RabbitMQ: published without them just before the connection
    closed, the last messages sometimes never reached a quorum queue (two of eight in a
    test's batch, now and then). Redis ignores the option."""
    return Connection(broker_url, transport_options={"confirm_publish": True})


def publish_task(broker_url: str, name: str, *args: object,
                 headers: dict[str, object] | None = None, priority: int | None = None,
                 **kwargs: object) -> str:
    """Publish one `name` job by name to the critical queue at `broker_url`; return its id."""
    with publisher_connection(broker_url) as connection, \
            app.amqp.Producer(connection) as producer:
        return app.send_task(name, args=args, kwargs=kwargs, queue="critical",
                             producer=producer, headers=headers, priority=priority).id


def last_outbox_id() -> int:
    return OutboxMessage.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def wait_for_outbox_jobs(test_redis: redis.Redis, *, after_id: int) -> None:
    """Every outbox job written after `after_id` was published and has run to its end in a
    test worker: whatever those jobs would do has been done."""
    def done() -> bool:
        jobs = list(OutboxMessage.objects.filter(pk__gt=after_id)
                    .values_list("task_id", "published_at"))
        return all(published is not None and test_redis.hexists(FINISHED, task_id)
                   for task_id, published in jobs)
    wait_for(done, what=f"the outbox jobs after {after_id} to run")


#: Fixtures that start real workers on the session's broker: a test using one is marked
#: `broker`, and `make test` runs those again with RabbitMQ as the broker.
BROKER_FIXTURES = {"celery_workers", "live_workers"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def test_redis() -> redis.Redis:
    """The session's Redis database, emptied; on a RabbitMQ broker, its vhost too."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.exit(f"Redis is not reachable at {settings.REDIS_URL}: "
                    "start it with: redis-server --daemonize yes", returncode=3)
    client.flushdb()
    if settings.BROKER_IS_RABBITMQ:
        try:
            reset_vhost(settings.CELERY_BROKER_URL)
        except (OSError, RuntimeError) as exc:
            pytest.exit(f"RabbitMQ is not reachable ({exc}): start it with: "
                        "rabbitmq-server -detached", returncode=3)
    return client


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[RecordingHandler]:
    controller, handler = start_smtp_server()
    yield handler
    controller.stop()


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[StripeStandIn]:
    server = StripeStandIn()
    server.thread.start()
    yield server
    server.shutdown()


@pytest.fixture
def stripe_api(stripe_server, settings) -> StripeStandIn:
    """Point the gateway at the local Stripe stand-in, with a fresh request log."""
    settings.STRIPE_API_KEY = "sk_test_local"
    settings.STRIPE_API_BASE = stripe_server.url
    stripe_server.requests.clear()
    return stripe_server


@pytest.fixture(scope="session")
def process_env(django_db_setup, smtp_server, stripe_server) -> dict[str, str]:
    """Environment for a child process: the migrated test database, the test SMTP server
    and the Stripe stand-in."""
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),  # exports written by one, read by another
        "PYTHONPATH": str(ROOT),
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_server.port}",
        "STRIPE_API_KEY": "sk_test_local",
        "STRIPE_API_BASE": stripe_server.url,
    }


@pytest.fixture(scope="session")
def celery_workers(process_env, test_redis, tmp_path_factory
                   ) -> Iterator[dict[str, subprocess.Popen]]:
    """A prefork worker per queue, as in production, on the migrated test database."""
    logs = tmp_path_factory.mktemp("workers")
    processes = {}
    for queue, hostname in WORKERS.items():
        log = (logs / f"{queue}.log").open("w")
        processes[queue] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue,
             "-n", hostname, "-c", "2", "-P", "prefork", "-l", "info", "-I", "tests.tasks",
             "--without-heartbeat", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=process_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for(lambda: len(app.control.ping(destination=list(WORKERS.values()),
                                              timeout=0.5)) == len(WORKERS),
                 timeout=60, what="test workers to answer a ping")
        yield processes
    finally:
        for process in processes.values():
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for queue in WORKERS:
            sys.stderr.write(f"--- {queue} worker log (last lines) ---\n")
            sys.stderr.writelines((logs / f"{queue}.log").read_text().splitlines(True)[-15:])


#: A Redis database for tests that start Celery processes of their own (`celery_process`).
# The Redis db of the processes a test starts with settings of its own; a second checkout
# running its tests beside this one sets TEST_PRIVATE_BROKER to another db.
PRIVATE_BROKER = os.environ.get("TEST_PRIVATE_BROKER", "redis://127.0.0.1:6379/10")


@pytest.fixture
def celery_process(process_env, transactional_db, tmp_path) -> Iterator[Callable[..., Path]]:
    """Start `celery -A config <args>` on PRIVATE_BROKER with extra environment; return the
    path of its log (worker args: the test workers' flags, the critical queue, one child).
    Every process started is killed when the test ends."""
    redis.Redis.from_url(PRIVATE_BROKER).flushdb()
    started: list[subprocess.Popen] = []

    def start(command: str, *args: str, **env: str) -> Path:
        if command == "worker":
            args = ("-Q", "critical", "-c", "1", "-n", f"private-{len(started)}@test",
                    "-I", "tests.tasks", "--without-heartbeat", "--without-mingle",
                    "--without-gossip", *args)
        log = tmp_path / f"{command}-{len(started)}.log"
        with log.open("w") as out:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", command, "-l", "info", *args],
                cwd=ROOT, env=process_env | {"CELERY_BROKER_URL": PRIVATE_BROKER, **env},
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        return log

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


#: Each access log line names the gunicorn worker (pid) that answered.
ACCESS_LOG_FORMAT = '%(p)s "%(r)s" %(s)s %(b)s'


@pytest.fixture
def web_server(process_env, transactional_db, tmp_path) -> Iterator[Callable[..., str]]:
    """Start the web application under gunicorn with two worker processes, as the Procfile
    and the image run it, on PRIVATE_BROKER unless `env` says otherwise; return its base
    URL. Killed at the end, with the tail of its log (access lines name the worker pid)."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(**env: str) -> str:
        port = free_port()
        log_path = tmp_path / f"web-{len(started)}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--workers", "2",
                 "--bind", f"127.0.0.1:{port}", "--access-logfile", "-",
                 "--access-logformat", ACCESS_LOG_FORMAT],
                cwd=ROOT, env=process_env | {"CELERY_BROKER_URL": PRIVATE_BROKER,
                                             "ALLOWED_HOSTS": "127.0.0.1", **env},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append((process, log_path))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: process.poll() is not None or _answers(f"{url}/healthz"),
                 what="gunicorn to serve /healthz")
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{tail(log_path, 40)}")
        return url

    yield start
    for process, log_path in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        sys.stderr.write(f"--- gunicorn log (last lines) ---\n{tail(log_path, 20)}")


def tail(path: Path, lines: int) -> str:
    return "".join(path.read_text(errors="replace").splitlines(True)[-lines:])


@pytest.fixture
def web_process(web_server) -> str:
    """The web application under gunicorn on PRIVATE_BROKER; its base URL."""
    return web_server()


@pytest.fixture
def private_fleet_env() -> dict[str, str]:
    """The environment of processes on a private broker of the session's kind: on a
    RabbitMQ session, a vhost of its own beside the session's (emptied), with the private
    Redis database as the platform's Redis; on Redis, PRIVATE_BROKER for both. Hand it to
    `celery_process` and `web_server`; a test using it is marked `broker` by hand."""
    redis.Redis.from_url(PRIVATE_BROKER).flushdb()
    if not settings.BROKER_IS_RABBITMQ:
        return {"CELERY_BROKER_URL": PRIVATE_BROKER, "REDIS_URL": PRIVATE_BROKER}
    parsed = urlparse(settings.CELERY_BROKER_URL)
    url = parsed._replace(path="/" + quote(f"{vhost_of(settings.CELERY_BROKER_URL)}-private",
                                           safe="")).geturl()
    reset_vhost(url)
    return {"CELERY_BROKER_URL": url, "REDIS_URL": PRIVATE_BROKER}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # localhost
            return response.status == 200
    except OSError:
        return False


def pytest_configure(config):
    """Empty the tables again when a worker's write deadlocked with the emptying: waiting
    for the workers' transactions to end (`live_workers`) narrows the window, but a
    worker may open one between that wait and the TRUNCATE (an alert's delivery after
    the dead letter a test ended at); PostgreSQL then cancels one of the two."""
    from django.test import TransactionTestCase

    flush = TransactionTestCase._fixture_teardown  # Django's flush after each test

    def flush_retried(case):
        attempts_left = FLUSH_ATTEMPTS
        while True:
            try:
                return flush(case)
            except CommandError as exc:
                attempts_left -= 1
                if not attempts_left or not isinstance(
                        getattr(exc.__cause__, "__cause__", None), DeadlockDetected):
                    raise

    TransactionTestCase._fixture_teardown = flush_retried


FLUSH_ATTEMPTS = 5


@pytest.fixture
def live_workers(celery_workers, transactional_db, test_redis):
    """Real workers plus a committed-data database the workers can see. At the end, the
    tables are emptied once no worker is inside a transaction: a test ends at the row it
    waited for, while the worker may still write what follows it (a dead letter's alert),
    and TRUNCATE against that write deadlocked."""
    yield celery_workers
    poll_until(_no_other_transaction, timeout=WRITES_SETTLE)  # then the flush, regardless


#: At most this long for the workers' transactions to end before the tables are emptied (a
#: test's job may hold one open for good: a hung task; the flush then goes ahead).
WRITES_SETTLE = 10.0


def _no_other_transaction() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                       "current_database() AND pid <> pg_backend_pid() AND backend_type = "
                       "'client backend' AND xact_start IS NOT NULL")
        (open_transactions,) = cursor.fetchone()
    return open_transactions == 0
