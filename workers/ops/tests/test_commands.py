"""`queues stats|probe`, `dlq drill`, `sync_schedules`, `/healthz` and `/readyz`; the
operator's commands without the system checks."""

import subprocess
import sys
import uuid

import psycopg
import pytest
import redis
from django.conf import settings
from django.core import checks
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import SystemCheckError
from django_celery_beat.models import PeriodicTask

from tests.faults.brokers import reset_vhost
from tests.faults.servers import PrivateRedis
from tests.fixtures import ROOT
from workers.core import broker_health
from workers.core.broker_urls import masked_url
from workers.dead_letters.models import DeadLetter

IDLE_REDIS = settings.REDIS_URL.rsplit("/", 1)[0] + "/14"  # no worker consumes it
IDLE_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/template-idle"


@pytest.fixture(params=["redis", "rabbitmq"])
def manage_on_idle_broker(request, process_env):
    """Runs `manage.py` against a broker that no worker consumes: a Redis db, or a
    RabbitMQ vhost (with that Redis db beside it)."""
    client = redis.Redis.from_url(IDLE_REDIS)
    client.flushdb()
    env = {"CELERY_BROKER_URL": IDLE_REDIS}
    if request.param == "rabbitmq":
        reset_vhost(IDLE_RABBITMQ)
        env = {"CELERY_BROKER_URL": IDLE_RABBITMQ, "REDIS_URL": IDLE_REDIS}

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60,
                              env=process_env | env)

    manage.broker = request.param  # type: ignore[attr-defined]
    yield manage
    client.flushdb()


def test_probe_reports_the_round_trip_of_each_queue(live_workers, capsys):
    call_command("queues", "probe")
    out = capsys.readouterr().out
    assert "critical   round trip" in out
    assert "(worker critical@test)" in out
    assert "bulk       round trip" in out
    assert "(worker bulk@test)" in out


def test_probe_fails_when_a_queue_has_no_consumer(manage_on_idle_broker):
    result = manage_on_idle_broker("queues", "probe", "--timeout", "1")
    assert result.returncode != 0
    assert "no consumer on critical, bulk" in result.stderr


def test_stats_shows_waiting_messages_and_the_oldest_age(manage_on_idle_broker):
    sent = manage_on_idle_broker("shell", "-c", "from workers.ops.tasks import probe; "
                                 "[probe.apply_async(args=[0], queue='bulk') for _ in range(3)]")
    assert sent.returncode == 0, sent.stderr

    result = manage_on_idle_broker("queues", "stats")

    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["critical"] == ["0", "-"]
    assert rows["bulk"][0] == "3"
    # On RabbitMQ, from the arrivals the publishing command counted as it exited.
    assert float(rows["bulk"][1].rstrip("s")) < 30


def test_drill_sees_its_dead_letter_and_discards_it(live_workers, capsys):
    call_command("dlq", "drill")
    assert "drill passed" in capsys.readouterr().out
    row = DeadLetter.objects.get(task_name="workers.tasks.dead_letter_drill")
    assert row.status == DeadLetter.Status.DISCARDED


def test_drill_fails_without_a_critical_worker(manage_on_idle_broker):
    result = manage_on_idle_broker("dlq", "drill", "--timeout", "1")
    assert result.returncode != 0
    assert "drill failed" in result.stderr


@pytest.fixture
def failing_system_check():
    """A system check that fails, as one might in a half-broken deploy."""
    def failing(**_: object) -> list[checks.CheckMessage]:
        return [checks.Error("a check that fails", id="tests.E001")]

    checks.register(failing, "tests")
    yield
    checks.registry.registry.registered_checks.discard(failing)


@pytest.mark.django_db(transaction=True)  # manage.py closes the connections after each
@pytest.mark.parametrize("command", [("dlq", "list"), ("outbox", "stats"),
                                     ("queues", "stats")])
def test_the_operators_commands_run_whatever_the_system_checks_say(command,
                                                                   failing_system_check,
                                                                   capsys):
    """They are for the middle of an incident; the checks are the deploy's to run."""
    with pytest.raises(SystemCheckError, match=r"tests\.E001"):
        call_command("check")
    execute_from_command_line(["manage.py", *command])  # exits non-zero after a check
    name, action = command
    execute_from_command_line(["manage.py", name, "--skip-checks", action])  # as before
    assert "tests.E001" not in capsys.readouterr().err


@pytest.fixture
def unmigrated_database_url():
    """An empty database of its own."""
    database = settings.DATABASES["default"]
    name = f"unmigrated_{uuid.uuid4().hex[:8]}"
    server = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


DATABASE_DOWN = {"DATABASE_URL": "postgres://postgres@127.0.0.1:1/test"}
WRONG = "not-the-broker-password"


@pytest.mark.parametrize(("command", "env", "line", "advice"), [
    (("dlq", "list"), DATABASE_DOWN, "CommandError: postgresql is not reachable (connection "
     "failed: ", "start it with: "),
    (("outbox", "stats"), DATABASE_DOWN, "CommandError: postgresql is not reachable "
     "(connection failed: ", "start it with: "),
    (("dlq", "list"), {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/no_such_db"},
     "CommandError: postgresql is not reachable (connection failed: ",
     'database "no_such_db" does not exist): check DATABASE_URL: the server answered'),
    (("queues", "stats"), {"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"},
     "CommandError: Redis is not reachable at redis://127.0.0.1:1/0: ", "start it with: "),
    (("queues", "stats"), {"CELERY_BROKER_URL": f"amqp://guest:{WRONG}@127.0.0.1:5672//"},
     "CommandError: RabbitMQ at amqp://guest:**@127.0.0.1:5672// refused the connection (",
     "ACCESS_REFUSED - Login was refused"),
    (("queues", "probe"), {"CELERY_BROKER_URL": f"amqp://guest:{WRONG}@127.0.0.1:5672//"},
     "CommandError: RabbitMQ at amqp://guest:**@127.0.0.1:5672// refused the connection (",
     "ACCESS_REFUSED - Login was refused"),
    (("queues", "probe"), {"REDIS_URL": "redis://127.0.0.1:1/0"},  # apart from the broker
     "CommandError: Redis is not reachable at redis://127.0.0.1:1/0: ", "start it with: "),
    (("dlq", "drill"), {"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/no-such-vhost"},
     "CommandError: RabbitMQ at amqp://guest:**@127.0.0.1:5672/no-such-vhost refused the "
     "connection (", "NOT_ALLOWED - vhost no-such-vhost not found): check CELERY_BROKER_URL: "
     "the server answered"),
])
def test_an_operators_command_names_the_service_that_is_down(command, env, line, advice,
                                                              process_env):
    """One line saying how to start it, not a traceback."""
    result = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env=process_env | env)
    assert result.returncode == 1
    (shown,) = result.stderr.strip().splitlines()
    assert shown.startswith(line)
    assert advice in shown
    assert WRONG not in result.stdout + result.stderr


@pytest.mark.parametrize(("password", "cause"), [
    ("", "it asks for a password the URL does not give"),
    (WRONG, "invalid username-password pair"),
])
def test_an_operators_command_on_a_redis_that_refuses_its_password_says_to_check_the_url(
        password, cause, process_env, tmp_path):
    """Not "start it": it runs, and the fix is in the URL."""
    broker = PrivateRedis(tmp_path, password="the-broker-password")
    broker.start()
    try:
        url = broker.url.replace("the-broker-password", password)
        result = subprocess.run([sys.executable, "manage.py", "queues", "stats"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60,
                                env=process_env | {"CELERY_BROKER_URL": url})
    finally:
        broker.kill()
    assert result.returncode == 1
    assert result.stdout == ""  # not the table's header before the error
    (shown,) = result.stderr.strip().splitlines()
    assert shown.startswith(f"CommandError: Redis at {masked_url(url)} refused the "
                            f"connection ({cause}")
    assert shown.endswith("): check CELERY_BROKER_URL: the server answered")
    assert "the-broker-password" not in shown
    assert WRONG not in shown


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])  # `make dev`'s default
def test_an_operators_command_on_a_database_without_its_tables_says_to_migrate(
        database, process_env, request, tmp_path):
    url = (request.getfixturevalue("unmigrated_database_url") if database == "postgresql"
           else f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    result = subprocess.run([sys.executable, "manage.py", "dlq", "list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env=process_env | {"DATABASE_URL": url})
    assert result.returncode == 1
    (shown,) = result.stderr.strip().splitlines()
    assert shown.startswith("CommandError: the database is not migrated (")
    assert shown.endswith("): run python manage.py migrate")


@pytest.mark.django_db
def test_sync_schedules_is_idempotent():
    call_command("sync_schedules")
    call_command("sync_schedules")
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert set(settings.CELERY_BEAT_SCHEDULE) <= names
    assert PeriodicTask.objects.filter(name__in=settings.CELERY_BEAT_SCHEDULE).count() == len(
        settings.CELERY_BEAT_SCHEDULE)
    rollup = PeriodicTask.objects.get(name="analytics-hourly-rollup")
    assert rollup.task == "apps.analytics.tasks.rollup_last_hour"
    assert rollup.crontab.minute == "5"


@pytest.mark.django_db
def test_readyz_reports_database_migrations_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "migrations": "ok", "broker": "ok"}


@pytest.fixture
def broker_down(monkeypatch, settings):
    """Point the app and the broker probe at a port where no broker listens (Celery reads
    the variable first; the probe's client is built once from the setting)."""
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    broker_health._probe_client.cache_clear()
    yield
    broker_health._probe_client.cache_clear()


@pytest.mark.django_db
def test_healthz_answers_without_touching_the_database_or_the_broker(
        client, django_assert_num_queries, broker_down):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_readyz_is_503_naming_what_is_down(client, broker_down):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "migrations": "ok",
                               "broker": "down: ConnectionError",
                               "redis": "ok"}  # REDIS_URL, left on the test Redis
