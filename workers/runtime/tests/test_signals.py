"""Signal handlers: pool processes keep their database connection across tasks."""


from celery.utils import uuid

from tests import tasks
from tests.fixtures import wait_for
from workers.core.routing import BULK


def test_pool_processes_keep_their_database_connection_across_tasks(live_workers,
                                                                     test_redis):
    key = uuid()
    for _ in range(12):
        tasks.database_backend.apply_async(args=[key], queue=BULK)

    recorded = f"test:backends:{key}"
    wait_for(lambda: test_redis.llen(recorded) == 12, what="12 tasks to run")
    backends = test_redis.lrange(recorded, 0, -1)

    # Two pool processes, one connection each (Celery alone would open one per task).
    assert len(set(backends)) <= 2
