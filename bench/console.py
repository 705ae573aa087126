"""The operations console: how long the "Background jobs" page takes to render with a
full history, and what that history costs in Redis.

    python -m bench.console [--letters 10000] [--tasks 50] [--rounds 15]

The database holds `--letters` dead letters; the history holds 72 hours of every hour and
the last hour of every minute for `--tasks` task names on both queues, all busy (every
record written, so the keys are as large as a day allows). The page is rendered by the
Django test client, as the admin's view runs in gunicorn, `--rounds` times; the figure is
the median. Plain Celery has no console: Flower's dashboard reads live worker state and
keeps no history, so there is no baseline, only the target.
"""

import argparse
import statistics
import time

from django.contrib.auth.models import User
from django.test import Client

from bench import harness
from bench.harness import figure
from workers.core.platform_redis import redis_client
from workers.core.routing import BULK, CRITICAL
from workers.dead_letters.models import DeadLetter
from workers.runtime.task_history import (
    COUNTERS,
    DAY_BYTES,
    RUNTIME_BUCKETS,
    history_write,
    slot_of,
)

TARGET_MS = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with harness.bench_database():
        harness.broker().flushdb()
        seed(letters=args.letters, tasks=args.tasks, now=time.time())
        history_bytes = sum(redis_client().memory_usage(key) or 0
                            for key in redis_client().scan_iter("workers:history:*"))
        timings = render(rounds=args.rounds)
    median = statistics.median(timings)
    harness.save("console", [
        figure(benchmark="console", name=f"render with {args.letters:,} dead letters, "
               f"{args.tasks} tasks x 72 h", unit="ms", template=round(median, 1),
               baseline=None, target=f"<= {TARGET_MS} ms", met=median <= TARGET_MS),
        figure(benchmark="console", name="history in Redis per task name per day, at most",
               unit="bytes", template=DAY_BYTES, baseline=None, ratio=False),
        figure(benchmark="console", name=f"history in Redis now ({args.tasks} tasks x 2 "
               "queues)", unit="MiB", template=round(history_bytes / 2**20, 1),
               baseline=None, ratio=False),
    ], timings_ms=timings)


def seed(*, letters: int, tasks: int, now: float) -> None:
    DeadLetter.objects.bulk_create(
        DeadLetter(task_id=f"bench-{n}", task_name=f"bench.tasks.task_{n % tasks}",
                   queue=BULK, exception_type="builtins.ValueError",
                   message=f"bad input {n % 17}", fingerprint=f"bench-{n % 17}")
        for n in range(letters))
    every_slot = {**{slot_of(counter): 3 for counter in COUNTERS},
                  **{slot_of("runtime", bucket): 1 for bucket in range(len(RUNTIME_BUCKETS))}}
    series = {(queue, f"bench.tasks.task_{n}"): every_slot
              for queue in (CRITICAL, BULK) for n in range(tasks)}
    moments = [now - hours * 3600 for hours in range(72, 0, -1)]
    moments += [now - minutes * 60 for minutes in range(60, -1, -1)]
    for moment in moments:
        pipe = redis_client().pipeline(transaction=False)
        history_write(pipe, series, now=moment)
        pipe.execute()


def render(*, rounds: int) -> list[float]:
    client = Client(SERVER_NAME="localhost")  # an allowed host of DJANGO_ENV=test
    client.force_login(User.objects.create_superuser("bench", password="bench-password"))
    timings = []
    for _ in range(rounds + 1):  # the first renders templates and warms connections
        started = time.perf_counter()
        response = client.get("/admin/workers/")
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return [round(ms, 1) for ms in timings[1:]]


if __name__ == "__main__":
    main()
