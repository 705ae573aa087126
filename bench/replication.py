"""Replication: what it costs the outbox to count a job published only once a Redis
replica holds it (BROKER_MIN_REPLICAS=1, WAIT), on a primary, a replica and three
Sentinels of the run's own.

    python -m bench.replication [--enqueue 1000] [--bulk-enqueue 10000] [--rounds 3]

Per round, the ways take turns on the same group, reached through its Sentinels as a
deployment would: a service writing a row and enqueueing one job through the outbox, with
and without the replica's acknowledgement, the same service with plain Celery's
`delay_on_commit`, and a bulk outbox enqueue of `--bulk-enqueue` jobs in one transaction
with and without it. Each figure is the median of its rounds. Without the wait, a
failover can lose jobs the outbox marked published (tests/faults/test_redis_failover.py).
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.faults.servers import PrivateRedisGroup

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Start the group, then measure in a process whose settings name its Sentinels
    (bench/replication_rounds.py, which takes the options)."""
    with tempfile.TemporaryDirectory(prefix="bench-replication-") as directory:
        group = PrivateRedisGroup(Path(directory) / "group")
        try:
            group.start()
            subprocess.run(
                [sys.executable, "-c", "from bench.replication_rounds import main; main()",
                 *sys.argv[1:]], cwd=ROOT, check=True,
                env=os.environ | {"BENCH_BROKER_URL": group.url,
                                  "REDIS_SENTINEL_MASTER": group.MASTER})
        finally:
            group.kill()


if __name__ == "__main__":
    main()
