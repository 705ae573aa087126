"""Fan-out: recipients per second for a 100,000-recipient newsletter, against plain Celery.

    python -m bench.newsletter [--recipients 100000] [--baseline-recipients 5000]
                               [--send-batches 50 500] [--rounds 3]

The template's way: one campaign, chunked into `--chunk-size` users per bulk task, each
recipient a Notification row (idempotent, visible in the admin), sent in committed batches
(one provider call each: NOTIFICATIONS_SEND_BATCH, and 500 as Postmark's batch endpoint
takes) under the shared rate limit (set high here so the machinery, not the limit, is measured).
The baseline is what teams move off: one `.delay()` per recipient calling send_mail on a
plain worker, with nothing recorded (a smaller run: its rate is flat). Both use Django's
in-memory email backend, the same Redis and the same pool size, in the same run. The ways
take turns for `--rounds` rounds, each figure the median of its rounds; each template
round starts from empty notification tables, as the first did.
"""

import argparse
import os
import statistics
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from apps.notifications.models import Campaign, CampaignChunk, Kind, Notification
from apps.notifications.services import campaign_create, campaign_start
from bench import harness, plain
from bench.harness import PLAIN, TEMPLATE, figure
from bench.probes import DONE_KEY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--baseline-recipients", type=int, default=5_000)
    parser.add_argument("--chunk-size", type=int, default=settings.NOTIFICATIONS_CHUNK_SIZE)
    parser.add_argument("--pool", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--send-batches", type=int, nargs="+",
                        default=[settings.NOTIFICATIONS_SEND_BATCH, 500],
                        help="recipients per provider call: the default, and what "
                             "Postmark's batch endpoint takes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["NOTIFICATIONS_RATE_PER_SECOND"] = "1000000"  # for the workers started below
    with harness.bench_database():
        emails = create_users(args.recipients)
        rates: dict[int, list[float]] = {batch: [] for batch in args.send_batches}
        baselines = []
        for _ in range(args.rounds):
            for batch in args.send_batches:
                rates[batch].append(run_template(recipients=args.recipients,
                                                 chunk_size=args.chunk_size, pool=args.pool,
                                                 send_batch=batch))
            baselines.append(run_baseline(emails=emails[: args.baseline_recipients],
                                          pool=args.pool))
        template = {batch: statistics.median(values) for batch, values in rates.items()}
        baseline = statistics.median(baselines)
    harness.save("newsletter", [figure(
        benchmark="fan-out",
        name=f"newsletter to {args.recipients:,}, chunks of {args.chunk_size}, "
             f"batches of {batch}",
        unit="recipients/s", template=rate, baseline=baseline,
        baseline_label=f"plain, a task per recipient ({args.baseline_recipients:,})",
        target=">= 20,000 recipients/s", met=rate >= 20_000)
        for batch, rate in template.items()],
        recipients=args.recipients, baseline_recipients=args.baseline_recipients,
        chunk_size=args.chunk_size, pool=args.pool, send_batches=args.send_batches,
        rounds=args.rounds, each_round={"template": rates, "baseline": baselines})


def create_users(count: int) -> list[str]:
    user = get_user_model()
    emails = [f"reader{i}@example.com" for i in range(count)]
    user.objects.bulk_create((user(username=f"reader{i}", email=email, password="!")
                              for i, email in enumerate(emails)), batch_size=5000)
    return emails


def run_template(*, recipients: int, chunk_size: int, pool: int, send_batch: int) -> float:
    harness.broker().flushdb()
    with connection.cursor() as cursor:  # the rounds before: their rows and campaigns
        cursor.execute("TRUNCATE " + ", ".join(
            model._meta.db_table for model in (Notification, CampaignChunk, Campaign)))
    campaign = campaign_create(kind=Kind.NEWSLETTER, key=f"bench-{send_batch}", subject="News",
                               body="What is new", chunk_size=chunk_size)
    with harness.running(kind=TEMPLATE, name="newsletter", concurrency=pool, queues="bulk",
                         env={"NOTIFICATIONS_SEND_BATCH": str(send_batch)}) as worker:
        harness.wait_ready(worker, kind=TEMPLATE, name="newsletter")
        started = time.monotonic()
        campaign_start(campaign_id=campaign.pk)
        # The campaign's own row turns DONE with its last chunk: one row to read, where
        # counting the sent rows every 0.2 s took PostgreSQL CPU from the workers measured.
        done = Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.DONE)
        while not done.exists():
            time.sleep(0.05)
        elapsed = time.monotonic() - started
    sent = Notification.objects.filter(campaign=campaign, status=Notification.Status.SENT)
    if sent.count() != recipients:
        raise SystemExit(f"the campaign is done with {sent.count():,} of {recipients:,} sent")
    return round(recipients / elapsed, 1)


def run_baseline(*, emails: list[str], pool: int) -> float:
    client = harness.broker()
    client.flushdb()
    with harness.running(kind=PLAIN, name="newsletter-plain", concurrency=pool) as worker:
        harness.wait_ready(worker, kind=PLAIN, name="newsletter-plain")
        started = time.monotonic()
        for email in emails:
            plain.send_email.delay(email)
        while int(client.get(DONE_KEY) or 0) < len(emails):
            time.sleep(0.05)
        return round(len(emails) / (time.monotonic() - started), 1)


if __name__ == "__main__":
    main()
