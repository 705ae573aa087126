"""Newsletter fan-out: recipients per second through the bulk pool, against plain Celery.

    python bench/newsletter.py [--recipients 100000] [--baseline-recipients 10000]

The template's way: one campaign, chunked into `--chunk-size` users per bulk task, each
recipient a Notification row (idempotent, visible in the admin), sent in committed batches
under the shared rate limit (set high here so the machinery, not the limit, is measured).
The baseline is what teams move off: one `.delay()` per recipient calling send_mail, with
nothing recorded. Both use the locmem email backend, the same Redis, the same worker pool
size, in the same run. Needs PostgreSQL and Redis like `make test`; creates and drops its
own database.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update({
    "DJANGO_SETTINGS_MODULE": "tests.settings",
    "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"),
    "EMAIL_URL": "memorymail://",
    "NOTIFICATIONS_RATE_PER_SECOND": "1000000",
    "LOG_LEVEL": "WARNING",
})

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_databases, teardown_databases  # noqa: E402

from apps.notifications.models import Kind, Notification  # noqa: E402
from apps.notifications.services import campaign_create, campaign_start  # noqa: E402
from bench.tasks import DONE_KEY, send_plain_email  # noqa: E402
from config.celery import app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--baseline-recipients", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=settings.NOTIFICATIONS_CHUNK_SIZE)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/newsletter.json")
    args = parser.parse_args()

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    databases = setup_databases(verbosity=0, interactive=False)
    worker = None
    try:
        emails = create_users(args.recipients)
        worker = start_worker(args.concurrency)
        template = run_template(args.recipients, args.chunk_size)
        baseline = run_baseline(broker, emails[: args.baseline_recipients])
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
        connection.close()
        teardown_databases(databases, verbosity=0)
        broker.flushdb()

    result = {
        "cores": os.cpu_count(), "worker_concurrency": args.concurrency,
        "chunk_size": args.chunk_size,
        "template": template, "baseline": baseline,
        "ratio_template_to_baseline": round(template["per_second"] / baseline["per_second"], 2),
    }
    print(f"{'run':34} {'recipients':>10} {'seconds':>8} {'per second':>11}")
    label = f"template (chunks of {args.chunk_size})"
    print(f"{label:34} {template['recipients']:>10} "
          f"{template['seconds']:>8.1f} {template['per_second']:>11.0f}")
    print(f"{'plain Celery, one task each':34} {baseline['recipients']:>10} "
          f"{baseline['seconds']:>8.1f} {baseline['per_second']:>11.0f}")
    print(f"ratio template / plain: {result['ratio_template_to_baseline']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


def create_users(count: int) -> list[str]:
    user = get_user_model()
    emails = [f"reader{i}@example.com" for i in range(count)]
    user.objects.bulk_create((user(username=f"reader{i}", email=email, password="!")
                              for i, email in enumerate(emails)), batch_size=5000)
    return emails


def start_worker(concurrency: int) -> subprocess.Popen:
    db = connection.settings_dict
    env = os.environ | {"PYTHONPATH": str(ROOT), "DATABASE_URL":
                        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/"
                        f"{db['NAME']}"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "bulk", "-n",
         "bench@%h", "-c", str(concurrency), "-P", "prefork", "-l", "warning",
         "-I", "bench.tasks", "--without-heartbeat", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        if time.monotonic() > deadline:
            raise SystemExit("the bench worker did not start")
    return worker


def run_template(recipients: int, chunk_size: int) -> dict:
    campaign = campaign_create(kind=Kind.NEWSLETTER, key="bench", subject="News",
                               body="What is new", chunk_size=chunk_size)
    started = time.monotonic()
    campaign_start(campaign_id=campaign.pk)
    sent = Notification.objects.filter(campaign=campaign, status=Notification.Status.SENT)
    while sent.count() < recipients:
        time.sleep(0.2)
    return _rate(recipients, time.monotonic() - started)


def run_baseline(broker: redis.Redis, emails: list[str]) -> dict:
    started = time.monotonic()
    for email in emails:
        send_plain_email.apply_async(args=[email], queue="bulk")
    while int(broker.get(DONE_KEY) or 0) < len(emails):
        time.sleep(0.05)
    return _rate(len(emails), time.monotonic() - started)


def _rate(recipients: int, seconds: float) -> dict:
    return {"recipients": recipients, "seconds": round(seconds, 2),
            "per_second": round(recipients / seconds, 1)}


if __name__ == "__main__":
    main()
