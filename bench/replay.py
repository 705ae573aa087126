"""Dead-letter replay: time to requeue 10,000 dead letters and have them all run, against
re-sending the same jobs with plain Celery.

    python -m bench.replay [--letters 10000] [--pool 2] [--rounds 3]

The dead letters are rows as the failure hook writes them, for a no-op on `bulk`. The
operator's command, `manage.py dlq requeue --task ...`, requeues them (a transaction per
500 rows, their publishes after its commit) while worker-bulk runs them, and each
successful replay is noted with its ack and its row resolved with the others of its batch
(workers/dead_letters/replay_resolutions.py): done is every row resolved. Plain Celery
has no dead letters; its figure is the floor: the same 10,000 calls sent with
`apply_async` by one process to a plain worker, done when the queue is drained. The two
take turns for `--rounds` rounds, each figure the median of its rounds; each template
round starts from an empty dead-letter table.
"""

import argparse
import statistics
import subprocess
import sys
import time

from django.db import connection

from bench import harness, plain, tasks
from bench.harness import PLAIN, ROOT, TEMPLATE, figure
from workers.dead_letters.models import DeadLetter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds: dict[str, list[dict]] = {TEMPLATE: [], PLAIN: []}
    with harness.bench_database():
        for _ in range(args.rounds):
            rounds[TEMPLATE].append(replay_template(letters=args.letters, pool=args.pool))
            rounds[PLAIN].append(resend_plain(letters=args.letters, pool=args.pool))
    template, baseline = ({part: statistics.median(run[part] for run in runs)
                           for part in ("sent", "done")} for runs in rounds.values())
    harness.save("replay", [
        figure(benchmark="replay", name=f"requeue {args.letters:,} dead letters and run them",
               unit="s", template=template["done"], baseline=baseline["done"],
               baseline_label="plain apply_async + run", target="<= 10 s",
               met=template["done"] <= 10),
        figure(benchmark="replay", name="  of which requeueing", unit="s",
               template=template["sent"], baseline=baseline["sent"],
               baseline_label="plain apply_async"),
        figure(benchmark="replay", name="dead letters replayed per second", unit="jobs/s",
               template=round(args.letters / template["done"], 1),
               baseline=round(args.letters / baseline["done"], 1)),
    ], letters=args.letters, pool=args.pool, rounds=args.rounds, each_round=rounds)


def replay_template(*, letters: int, pool: int) -> dict:
    harness.broker().flushdb()
    with connection.cursor() as cursor:  # the round before's rows, resolved
        cursor.execute(f"TRUNCATE {DeadLetter._meta.db_table} CASCADE")
    DeadLetter.objects.bulk_create(
        (DeadLetter(task_id=f"bench-{n}", task_name=tasks.noop.name, queue="bulk",
                    exception_type="bench.Failure", message="failed for the benchmark")
         for n in range(letters)), batch_size=5000)
    with harness.running(kind=TEMPLATE, name="replay", concurrency=pool,
                         queues="bulk") as worker:
        harness.wait_ready(worker, kind=TEMPLATE, name="replay")
        started = time.monotonic()
        subprocess.run([sys.executable, "manage.py", "dlq", "requeue", "--task",
                        tasks.noop.name], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        sent = time.monotonic() - started
        open_rows = DeadLetter.objects.exclude(status=DeadLetter.Status.RESOLVED)
        while open_rows.exists():
            time.sleep(0.05)
        done = time.monotonic() - started
    return {"sent": round(sent, 2), "done": round(done, 2)}


def resend_plain(*, letters: int, pool: int) -> dict:
    client = harness.broker()
    client.flushdb()
    with harness.running(kind=PLAIN, name="resend", concurrency=pool) as worker:
        harness.wait_ready(worker, kind=PLAIN, name="resend")
        started = time.monotonic()
        for _ in range(letters):
            plain.noop.apply_async()
        sent = time.monotonic() - started
        while client.llen("celery") or client.hlen(harness.UNACKED):
            time.sleep(0.05)
        done = time.monotonic() - started
    return {"sent": round(sent, 2), "done": round(done, 2)}


if __name__ == "__main__":
    main()
