"""Redrive: 10,000 dead letters of one failure, among the noise of 20 others, found and
redriven from the admin, at a set rate behind a canary.

    python -m bench.redrive [--letters 10000] [--noise 20] [--rate 400] [--canary 10]

An operator's three clicks from the dead-letter list, made with Django's test client
against the real admin: *By cause* (the groups page, where the biggest cause is found),
*Redrive…* on that cause (the selection is frozen), *Start redrive* with the rate and the
canary. Then worker-critical runs the redrive's steps and worker-bulk the replays; done is
the redrive finished with every replay succeeded. Target: all done in 60 s.
"""

import argparse
import re
import time

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from bench import harness, tasks
from bench.harness import TEMPLATE, figure
from workers.dead_letters.fingerprints import failure_fingerprint
from workers.dead_letters.models import DeadLetter, Redrive

TARGET_SECONDS = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=10_000)
    parser.add_argument("--noise", type=int, default=20, help="other causes, 50 rows each")
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--canary", type=int, default=10)
    args = parser.parse_args()
    with harness.bench_database():
        result = redrive(letters=args.letters, noise=args.noise, rate=args.rate,
                         canary=args.canary)
    harness.save("redrive", [
        figure(benchmark="redrive", name=f"find and redrive {args.letters:,} of one cause "
               f"among {args.noise} others, at {args.rate:g}/s behind a canary of "
               f"{args.canary}", unit="s", template=result["done"], baseline=None,
               target=f"<= {TARGET_SECONDS} s in <= 3 clicks",
               met=result["done"] <= TARGET_SECONDS and result["clicks"] <= 3),
        figure(benchmark="redrive", name="  admin clicks from the dead-letter list",
               unit="clicks", template=result["clicks"], baseline=None, ratio=False),
        figure(benchmark="redrive", name="  replays succeeded", unit="rows",
               template=result["succeeded"], baseline=None, ratio=False),
    ], **args.__dict__)


def redrive(*, letters: int, noise: int, rate: float, canary: int) -> dict:
    harness.broker().flushdb()
    _dead_letters(letters=letters, noise=noise)
    admin = User.objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client(HTTP_HOST="localhost")
    client.force_login(admin)
    with harness.running(kind=TEMPLATE, name="redrive-critical", concurrency=1,
                         queues="critical") as critical, \
            harness.running(kind=TEMPLATE, name="redrive-bulk", concurrency=2,
                            queues="bulk") as bulk:
        harness.wait_ready(critical, kind=TEMPLATE, name="redrive-critical")
        harness.wait_ready(bulk, kind=TEMPLATE, name="redrive-bulk")
        started = time.monotonic()
        # 1. "By cause": the biggest open cause is at the top of its counts.
        groups = client.get(reverse("admin:workers_deadletter_groups")).content.decode()
        fingerprint = _biggest(groups, letters)
        # 2. "Redrive…" on it: a draft holding exactly its rows.
        draft = client.post(reverse("admin:workers_deadletter_groups"),
                            {"action": "redrive", "fingerprint": fingerprint})
        # 3. "Start redrive".
        client.post(draft.url, {"control": "start", "rate": rate, "canary": canary,
                                "max_failure_rate": 20, "queue": ""})
        job = Redrive.objects.get()
        while job.status not in (Redrive.Status.DONE, Redrive.Status.PAUSED,
                                 Redrive.Status.CANCELLED):
            time.sleep(0.1)
            job.refresh_from_db()
        done = time.monotonic() - started
    if job.status != Redrive.Status.DONE:
        raise SystemExit(f"redrive {job.pk} {job.status}: {job.status_reason}")
    return {"done": round(done, 2), "clicks": 3, "succeeded": job.succeeded}


def _dead_letters(*, letters: int, noise: int) -> None:
    """Rows as the failure hook writes them: the big cause is a no-op that now succeeds."""
    def row(n: int, *, message: str, exception: str) -> DeadLetter:
        return DeadLetter(task_id=f"bench-{n}", task_name=tasks.noop.name, queue="bulk",
                          exception_type=exception, message=message,
                          fingerprint=failure_fingerprint(task_name=tasks.noop.name,
                                                          exception_type=exception,
                                                          message=message))
    rows = [row(n, message=f"upstream timed out for order {n}", exception="bench.Timeout")
            for n in range(letters)]
    rows += [row(letters + cause * 50 + n, message=f"cause {chr(97 + cause)} broke",
                 exception=f"bench.Failure{cause}") for cause in range(noise) for n in range(50)]
    DeadLetter.objects.bulk_create(rows, batch_size=5000)


def _biggest(page: str, letters: int) -> str:
    match = re.search(r'data-fingerprint="(\w+)">(?:(?!</tr>).)*?class="count-new"><a [^>]*>'
                      + str(letters) + "<", page, re.S)
    if match is None:
        raise SystemExit("the groups page does not show the cause with "
                         f"{letters} open rows")
    return match[1]


if __name__ == "__main__":
    main()
