"""Retention: how long dead letters are kept, by status, and a cap on the table's size.

Closed rows (resolved, discarded) go after their age limit; open rows only if
DEAD_LETTER_KEEP_OPEN_DAYS is set (by default a failure nobody looked at is never thrown
away). Over DEAD_LETTER_MAX_ROWS, the oldest closed rows go first; open rows are never
deleted for the cap, and a table of open rows over it is logged as a warning instead.
Deletes run in batches of DEAD_LETTER_PURGE_BATCH ids, a bounded number per run, so a
first run over a big backlog never holds long locks; beat's housekeeping runs every minute.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.dead_letters.rules import CLOSED, OPEN

logger = logging.getLogger(__name__)

BATCHES_PER_RUN = 20


def dead_letters_apply_retention(*, now: datetime) -> int:
    """Delete what retention allows, at most BATCHES_PER_RUN batches; return how many."""
    budget = BATCHES_PER_RUN
    deleted = 0
    for rows in _expired(now=now):
        while budget:
            done = _delete_batch(rows)
            deleted += done
            if done < settings.DEAD_LETTER_PURGE_BATCH:
                break
            budget -= 1
    excess = DeadLetter.objects.count() - settings.DEAD_LETTER_MAX_ROWS
    closed = DeadLetter.objects.filter(status__in=CLOSED).order_by("failed_at")
    while excess > 0 and budget:
        done = _delete_batch(closed, limit=min(excess, settings.DEAD_LETTER_PURGE_BATCH))
        if not done:
            logger.warning("%d dead letters over DEAD_LETTER_MAX_ROWS are all open; none "
                           "deleted (triage them, or set DEAD_LETTER_KEEP_OPEN_DAYS)", excess)
            break
        deleted, excess, budget = deleted + done, excess - done, budget - 1
    if deleted:
        dead_letter_audit(actor="retention", action=DeadLetterEvent.Action.PURGED,
                          count=deleted)
    return deleted


def _expired(*, now: datetime) -> list[QuerySet[DeadLetter]]:
    limits = [(DeadLetter.Status.RESOLVED, settings.DEAD_LETTER_KEEP_RESOLVED_DAYS),
              (DeadLetter.Status.SUPERSEDED, settings.DEAD_LETTER_KEEP_RESOLVED_DAYS),
              (DeadLetter.Status.DISCARDED, settings.DEAD_LETTER_KEEP_DISCARDED_DAYS),
              *((status, settings.DEAD_LETTER_KEEP_OPEN_DAYS) for status in OPEN)]
    return [DeadLetter.objects.filter(status=status, failed_at__lt=now - timedelta(days=days))
            for status, days in limits if days > 0]


def _delete_batch(rows: QuerySet[DeadLetter], *, limit: int | None = None) -> int:
    ids = list(rows.values_list("pk", flat=True)[:limit or settings.DEAD_LETTER_PURGE_BATCH])
    if not ids:
        return 0
    return DeadLetter.objects.filter(pk__in=ids).delete()[1].get(DeadLetter._meta.label, 0)
