"""Transactional enqueue (the outbox): a job exists if and only if its transaction commits.

`on_commit` alone loses the job when the process dies between the commit and the
publish, or when Redis is down at that moment. Here the job is a row written in the
caller's transaction; it is published right after commit and, failing that, by the
sweeper that beat runs every few seconds. Rows are claimed with
`SELECT … FOR UPDATE SKIP LOCKED`, so any number of publishers and sweepers can run.
"""

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from celery.utils import uuid
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Min, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError

from workers.api.broker import broker_reachable
from workers.api.correlation import correlation_id
from workers.api.headers import CORRELATION_HEADER
from workers.api.models import OutboxMessage
from workers.api.routing import queue_for

logger = logging.getLogger(__name__)

# Rows this thread wrote whose transaction has not been published yet. The first
# after-commit callback of a transaction publishes them all in batches; the others
# find their row gone from the set and return.
_written = threading.local()


def outbox_enqueue(*, task_name: str, args: list[Any] | tuple[Any, ...] = (),
                   kwargs: dict[str, Any] | None = None, queue: str | None = None,
                   task_id: str | None = None,
                   headers: dict[str, Any] | None = None) -> OutboxMessage:
    """Write the job in the current transaction and publish it once that commits."""
    (row,) = outbox_enqueue_many(jobs=[OutboxMessage(
        task_id=task_id or uuid(), task_name=task_name, queue=queue or queue_for(task_name),
        args=list(args), kwargs=dict(kwargs or {}), headers=dict(headers or {}))])
    return row


def outbox_enqueue_many(*, jobs: list[OutboxMessage]) -> list[OutboxMessage]:
    """Write many jobs with one INSERT; they are published together once it commits.

    Each keeps the correlation id bound now: the sweeper may publish it from elsewhere.
    """
    bound = correlation_id()
    if bound:
        for job in jobs:
            job.headers.setdefault(CORRELATION_HEADER, bound)
    rows = OutboxMessage.objects.bulk_create(jobs)
    written = _written_ids()
    written.update(row.pk for row in rows)
    if rows:
        first = rows[0].pk
        transaction.on_commit(lambda: _publish_committed(first))
    return rows


def _written_ids() -> set[int]:
    if not hasattr(_written, "ids"):
        _written.ids = set()
    ids: set[int] = _written.ids
    return ids


def _publish_committed(pk: int) -> None:
    """Publish what this thread's committed transaction wrote.

    Ids of rows rolled back in a savepoint may be in the set; they match no row.
    """
    ids = _written_ids()
    if pk not in ids:
        return
    batch = list(ids)
    ids.clear()
    pending = OutboxMessage.objects.filter(pk__in=batch)
    try:
        while outbox_publish(pending=pending) == settings.OUTBOX_BATCH:
            pass
    except DatabaseError as exc:
        # What the caller did is committed, jobs included: the sweeper publishes them.
        # Raising here would fail a request whose work is done (and a webhook's sender
        # would retry it for nothing).
        logger.warning("outbox: %d job(s) left for the sweeper, database error while "
                       "publishing after commit: %s", len(batch), exc)


def outbox_sweep(*, now: datetime) -> int:
    """Publish every row left unpublished for longer than OUTBOX_SWEEP_GRACE; return how many.

    The grace leaves fresh rows to the publisher that runs right after their commit.
    """
    cutoff = now - timedelta(seconds=settings.OUTBOX_SWEEP_GRACE)
    pending = OutboxMessage.objects.filter(published_at__isnull=True, created_at__lte=cutoff)
    published = 0
    while True:
        batch = outbox_publish(pending=pending)
        published += batch
        if batch < settings.OUTBOX_BATCH:  # a short batch: nothing left that is not locked
            return published


def outbox_publish(*, pending: QuerySet[OutboxMessage]) -> int:
    """Claim up to OUTBOX_BATCH unpublished rows, publish them, mark them; return how many.

    Never raises for a broker outage: the rows stay pending for the sweeper. The caller
    is often a request that has already committed and must neither fail nor wait for
    Redis's client retries, hence the quick ping first.
    """
    if not broker_reachable():
        logger.warning("outbox: broker unreachable, jobs left for the sweeper")
        return 0
    with transaction.atomic():
        rows = list(pending.filter(published_at__isnull=True)
                    .select_for_update(skip_locked=True)[:settings.OUTBOX_BATCH])
        published = []
        try:
            with current_app.producer_or_acquire() as producer:
                for row in rows:
                    current_app.send_task(
                        row.task_name, args=row.args, kwargs=row.kwargs, queue=row.queue,
                        task_id=row.task_id, headers=row.headers,
                        ignore_result=True,
                        producer=producer, retry=False)
                    published.append(row.pk)
        except OperationalError as exc:
            unsent = [row.pk for row in rows if row.pk not in published]
            logger.warning("outbox: %d job(s) left for the sweeper, broker unavailable: %s",
                           len(unsent), exc)
            OutboxMessage.objects.filter(pk__in=unsent).update(
                publish_attempts=F("publish_attempts") + 1, last_error=str(exc)[:2000])
        if published:
            OutboxMessage.objects.filter(pk__in=published).update(
                published_at=timezone.now(), publish_attempts=F("publish_attempts") + 1)
    return len(published)


def outbox_purge_published(*, before: datetime) -> int:
    """Delete rows published before `before`; return how many."""
    deleted, _ = OutboxMessage.objects.filter(published_at__lt=before).delete()
    return deleted


def outbox_pending_stats(*, now: datetime) -> tuple[int, float | None]:
    """How many rows are unpublished, and the oldest one's age in seconds."""
    pending = OutboxMessage.objects.filter(published_at__isnull=True)
    oldest = pending.aggregate(oldest=Min("created_at"))["oldest"]
    return pending.count(), None if oldest is None else (now - oldest).total_seconds()
