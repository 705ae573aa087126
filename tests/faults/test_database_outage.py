"""PostgreSQL down while tasks fail: every failure becomes one dead letter once it is back."""

import time
from collections import Counter

import psycopg
import redis

from tests.faults.brokers import broker_idle
from tests.faults.harness import Ledger, Processes, new_keys
from tests.faults.servers import PrivatePostgres
from tests.fixtures import HANG, publish_task, wait_for
from workers.dead_letters.spool import SPOOL_KEY


def dead_letters(database_url: str, keys: list[str]) -> Counter:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT args->>0 FROM workers_deadletter "
                                  "WHERE task_name = 'tests.tasks.permanent'").fetchall()
    return Counter(key for (key,) in rows if key in keys)


def test_failures_during_a_database_outage_are_dead_lettered_once_it_returns(
        processes: Processes, private_postgres: PrivatePostgres, fault_broker, record_ledger):
    private_postgres.start()
    migrate = processes.run(["manage.py", "migrate", "--noinput"], timeout=HANG,
                            DATABASE_URL=private_postgres.url)
    assert migrate.returncode == 0, migrate.stderr
    processes.worker("no-database", fault_broker, concurrency=2,
                     DATABASE_URL=private_postgres.url)
    wait_for(lambda: "ready." in processes.log("no-database"), what="the worker to start")
    broker = redis.Redis.from_url(fault_broker)
    keys = new_keys(10)

    private_postgres.stop()
    for key in keys:
        publish_task(fault_broker, "tests.tasks.permanent", key)
    wait_for(lambda: broker.llen(SPOOL_KEY) == len(keys), what="every failure in the spool")
    # Recorded first, acknowledged after: every message is acked once its failure is kept.
    wait_for(lambda: broker_idle(fault_broker), what="every failed message acknowledged")

    private_postgres.start()
    back_at = time.monotonic()
    publish_task(fault_broker, "workers.tasks.drain_dead_letter_spool")  # as beat does
    wait_for(lambda: broker.llen(SPOOL_KEY) == 0, what="the spool to drain")

    rows = dead_letters(private_postgres.url, keys)
    record_ledger(Ledger(fault="PostgreSQL down while 10 tasks fail", sent=len(keys),
                         completed=0, dead_lettered=len(rows),
                         lost=sum(1 for key in keys if not rows[key]),
                         doubled=sum(1 for key in keys if rows[key] > 1),
                         recovery_seconds=round(time.monotonic() - back_at, 2)))
