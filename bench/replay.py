"""Dead-letter replay: time to requeue 10,000 dead letters and have them all run, against
re-sending the same jobs with plain Celery.

    python -m bench.replay [--letters 10000] [--pool 2]

The dead letters are rows as the failure hook writes them, for a no-op on `bulk`. The
operator's command, `manage.py dlq requeue --task ...`, requeues them (a transaction per
500 rows, their publishes after its commit) while worker-bulk runs them, and each replay
closes its row once it succeeds (an UPDATE per task): done is every row resolved. Plain
Celery has no dead letters; its figure is the floor: the same 10,000 calls sent with
`apply_async` by one process to a plain worker, done when the queue is drained.
"""

import argparse
import subprocess
import sys
import time

from bench import harness, plain, tasks
from bench.harness import PLAIN, ROOT, TEMPLATE, figure
from workers.dead_letters.models import DeadLetter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=2)
    args = parser.parse_args()
    with harness.bench_database():
        template = replay_template(letters=args.letters, pool=args.pool)
        baseline = resend_plain(letters=args.letters, pool=args.pool)
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
    ], letters=args.letters, pool=args.pool)


def replay_template(*, letters: int, pool: int) -> dict:
    harness.broker().flushdb()
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
