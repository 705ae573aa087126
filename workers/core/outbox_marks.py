"""Marks of outbox rows published right after their commit, written in batches.

Marking each publish on its own cost every enqueueing service a statement and a round
trip, a fifth of what the outbox cost it (docs/performance.md). Rows published from
memory after their commit are noted here instead, and a thread of the process marks
everything noted with one UPDATE every OUTBOX_MARK_INTERVAL seconds.

A mark is only the sweeper's hint. One lost with the process (SIGKILL) or to a database
error makes the sweeper publish the row again after OUTBOX_SWEEP_GRACE, which outbox
tasks allow (effect-once or idempotent, and the same task id). The interval must stay
well under that grace, or rows would be published twice as a matter of course.
"""

import atexit
import logging
import os
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import F
from django.utils import timezone

from workers.core.models import OutboxMessage

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_noted: list[int] = []
_wake = threading.Event()
_marker: threading.Thread | None = None


def outbox_marks_note(*, ids: list[int]) -> None:
    """Have the rows marked published within OUTBOX_MARK_INTERVAL (at once if it is 0)."""
    if settings.OUTBOX_MARK_INTERVAL <= 0:
        mark_published(ids=ids)
        return
    global _marker
    with _lock:
        _noted.extend(ids)
        if _marker is None:
            _marker = threading.Thread(target=_mark_noted_forever, name="outbox-marks",
                                       daemon=True)
            _marker.start()
    _wake.set()


def outbox_marks_flush() -> int:
    """Mark every noted row now, on the caller's connection; return how many.

    Run at exit (and by a pool process leaving) so that a clean stop leaves the sweeper
    nothing to send twice. A database error puts the ids back for the next try.
    """
    with _lock:
        ids = _noted[:]
        _noted.clear()
    if not ids:
        return 0
    try:
        mark_published(ids=ids)
    except DatabaseError:
        with _lock:
            _noted.extend(ids)
        raise
    return len(ids)


def mark_published(*, ids: list[int]) -> None:
    """Mark the rows sent, in one statement that does not wait for the disk.

    A mark lost in a PostgreSQL crash makes the sweeper send the job again, which the
    outbox allows; waiting for the WAL flush made every enqueue pay a second durable
    commit. `set_config(…, true)` lasts until the statement's own transaction ends.
    A row already marked (the sweeper got there first) is left as it is.
    """
    connection = connections["default"]
    now = timezone.now()
    if connection.vendor != "postgresql":
        OutboxMessage.objects.filter(pk__in=ids, published_at=None).update(
            published_at=now, publish_attempts=F("publish_attempts") + 1)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OutboxMessage._meta.db_table} "  # noqa: S608  # the model's own table
            "SET published_at = %s, publish_attempts = publish_attempts + 1 "
            "WHERE id = ANY(%s) AND published_at IS NULL "
            "AND set_config('synchronous_commit', 'off', true) = 'off'",
            [now, ids])


def _mark_noted_forever() -> None:
    """The marker thread: a batch every interval while rows come, its own database
    connection closed as soon as a pass finds nothing (an idle process holds none)."""
    while True:
        _wake.wait()
        _wake.clear()
        while True:
            time.sleep(settings.OUTBOX_MARK_INTERVAL)
            try:
                if not outbox_marks_flush():
                    break
            except DatabaseError as exc:
                logger.warning("outbox: marks of published rows not written, trying again: %s",
                               exc)
                connections.close_all()
        connections.close_all()


def outbox_marks_flush_before_exit() -> None:
    """The flush of a process leaving: a database error is logged, not raised."""
    try:
        outbox_marks_flush()
    except DatabaseError as exc:  # the sweeper sends those rows again
        logger.warning("outbox: marks of published rows lost at exit: %s", exc)


def _forget_in_child() -> None:
    """A forked child has no marker thread, and the parent marks what it had noted."""
    global _lock, _marker
    _lock = threading.Lock()
    _noted.clear()
    _wake.clear()
    _marker = None


atexit.register(outbox_marks_flush_before_exit)
os.register_at_fork(after_in_child=_forget_in_child)
