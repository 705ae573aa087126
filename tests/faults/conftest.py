"""Fixtures for the fault tests, and the ledger table printed at the end of `make test`."""

from collections.abc import Iterator

import pytest
import redis

from tests.faults.harness import FAULT_BROKER_DB, Ledger, Processes
from tests.faults.servers import PrivatePostgres, PrivateRedis

LEDGERS: list[Ledger] = []


@pytest.fixture
def processes(process_env, transactional_db, tmp_path) -> Iterator[Processes]:
    children = Processes(process_env, tmp_path)
    try:
        yield children
    finally:
        children.stop_all()
        print(children.tail())  # shown by pytest only when the test failed


@pytest.fixture
def fault_broker() -> str:
    """An emptied Redis database that only this test's workers consume."""
    url = f"redis://127.0.0.1:6379/{FAULT_BROKER_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.directory.mkdir()
    try:
        yield server
    finally:
        server.kill()


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
    write(f"{'fault':44} {'sent':>5} {'done':>5} {'dead':>5} {'lost':>5} {'double':>6} "
          f"{'recovery':>9}")
    for row in LEDGERS:
        write(f"{row.fault:44} {row.sent:>5} {row.completed:>5} {row.dead_lettered:>5} "
              f"{row.lost:>5} {row.doubled:>6} {row.recovery_seconds:>8.2f}s")
