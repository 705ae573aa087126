"""Fixtures for the fault tests, and the ledger table printed at the end of `make test`."""

from collections.abc import Iterator

import pytest
import redis

from tests.faults.brokers import FAULT_REDIS, FAULT_VHOST, reset_vhost
from tests.faults.harness import Ledger, Processes
from tests.faults.servers import (
    PrivatePostgres,
    PrivateRabbitMQ,
    PrivateRedis,
    PrivateRedisGroup,
)

LEDGERS: list[Ledger] = []

#: Runs a test once per broker: `@BOTH_BROKERS` with the `fault_broker` fixture.
BOTH_BROKERS = pytest.mark.parametrize("fault_broker", ["redis", "rabbitmq"], indirect=True)
#: The same with the `private_broker` fixture.
BOTH_PRIVATE_BROKERS = pytest.mark.parametrize("private_broker", ["redis", "rabbitmq"],
                                               indirect=True)


@pytest.fixture
def processes(process_env, transactional_db, tmp_path) -> Iterator[Processes]:
    children = Processes(process_env, tmp_path)
    try:
        yield children
    finally:
        children.stop_all()
        print(children.tail())  # shown by pytest only when the test failed


@pytest.fixture
def fault_broker(request) -> str:
    """The URL of an emptied broker that only this test's workers consume: a Redis
    database, or (parametrized "rabbitmq") a vhost of the local RabbitMQ, whose workers
    keep their locks and counters in that Redis database."""
    redis.Redis.from_url(FAULT_REDIS).flushdb()
    if getattr(request, "param", "redis") == "redis":
        return FAULT_REDIS
    url = f"amqp://guest:guest@127.0.0.1:5672/{FAULT_VHOST}"
    reset_vhost(url)
    return url


@pytest.fixture
def private_broker(request, tmp_path) -> Iterator[PrivateRedis | PrivateRabbitMQ]:
    """A broker server of the test's own to kill and restart: redis-server with AOF, or
    (parametrized "rabbitmq") a RabbitMQ node on spare ports. Not started yet."""
    if getattr(request, "param", "redis") == "redis":
        redis_server = PrivateRedis(tmp_path / "redis")
        redis_server.directory.mkdir()
        try:
            yield redis_server
        finally:
            redis_server.kill()
        return
    redis.Redis.from_url(FAULT_REDIS).flushdb()
    node = PrivateRabbitMQ()
    try:
        yield node
    finally:
        node.remove()


@pytest.fixture
def redis_group(tmp_path) -> Iterator[PrivateRedisGroup]:
    """A Redis primary, a replica and three Sentinels of the test's own, started."""
    group = PrivateRedisGroup(tmp_path / "redis-group")
    try:
        group.start()
        yield group
    finally:
        group.kill()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def record_ledger():
    """Keep a test's ledger for the summary table; assert nothing was lost or doubled."""
    def record(ledger: Ledger) -> Ledger:
        LEDGERS.append(ledger)
        assert (ledger.lost, ledger.doubled) == (0, 0), ledger
        assert ledger.completed + ledger.dead_lettered == ledger.sent, ledger
        return ledger
    return record


def pytest_terminal_summary(terminalreporter):
    if not LEDGERS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault ledger")
    width = max(len(row.fault) for row in LEDGERS)
    write(f"{'fault':{width}} {'sent':>5} {'done':>5} {'dead':>5} {'lost':>5} {'double':>6} "
          f"{'recovery':>9}")
    for row in LEDGERS:
        write(f"{row.fault:{width}} {row.sent:>5} {row.completed:>5} {row.dead_lettered:>5} "
              f"{row.lost:>5} {row.doubled:>6} {row.recovery_seconds:>8.2f}s")
