"""One beat at a time, and one send per due slot: the database scheduler behind a Redis lock.

Every beat process ticks, but only the lock holder sends anything; the others are
standbys. The holder renews the lock on every tick (at least every
`beat_max_loop_interval` seconds); if it dies the lock expires after BEAT_LOCK_TTL
seconds and a standby takes it, re-reads each entry's last run time from the database
(written after every send, `beat_sync_every = 1`) and carries on from there.

A holder can die after a send and before its last run time reaches the database; the
standby would then see the entry as still due. Each send therefore first claims its slot
(entry name + the last run time it follows) in Redis: the standby computes the same slot
from the same database row and skips it. What remains: a holder killed between the claim
and the publish loses that one slot (the next one is sent as usual).
"""

import contextlib
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from celery.exceptions import ImproperlyConfigured
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry
from redis.exceptions import LockNotOwnedError, RedisError

from workers.core.platform_redis import redis_client
from workers.runtime.heartbeat import heartbeat, touch
from workers.runtime.heartbeat_records import BEAT_LOCK_KEY, write_beat_tick

logger = logging.getLogger(__name__)

BEAT_SLOT_PREFIX = "workers:beat:slot:"


class GuardedEntry(ModelEntry):
    """An entry whose schedule cannot be computed in this process (a solar schedule
    without the `ephem` library) is skipped with an error in the log, as
    django-celery-beat already skips one it finds invalid (a ValueError): raised from
    the schedule, it stopped beat and with it every other entry."""

    def __init__(self, model: Any, app: Any = None) -> None:
        try:
            super().__init__(model, app=app)
        except ImproperlyConfigured as error:
            logger.error("beat: entry %r skipped, its schedule cannot be computed: %s",
                         model.name, error)
            raise ValueError(str(error)) from error


class LockedDatabaseScheduler(DatabaseScheduler):
    Entry = GuardedEntry

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock = redis_client().lock(BEAT_LOCK_KEY, timeout=settings.BEAT_LOCK_TTL,
                                         thread_local=False)
        self._leading = False
        self._identity = f"{socket.gethostname()}:{os.getpid()}"
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if settings.BEAT_HEARTBEAT_FILE:
            touch(settings.BEAT_HEARTBEAT_FILE)
        if not self._hold_lock():
            heartbeat.send(sender="beat")
            return self.max_interval
        with contextlib.suppress(RedisError):  # the lock was just renewed; a blip is no news
            write_beat_tick()
        heartbeat.send(sender="beat")
        return super().tick(*args, **kwargs)

    def reserve(self, entry: ModelEntry) -> ModelEntry:
        """Keep the advanced entry in the schedule, as Celery's own scheduler does.

        django-celery-beat advances only the shared model row and leaves the old entry,
        with its old last run time, in the schedule; a heap rebuilt from the schedule
        before the next reload (its change detection invalidates the heap one tick late)
        finds the entry due again and sends it a second time, about 25 ms after the first.
        """
        new_entry = super().reserve(entry)
        self._schedule[new_entry.name] = new_entry
        return new_entry

    def apply_async(self, entry: ModelEntry, producer: Any = None, advance: bool = True,
                    **kwargs: Any) -> Any:
        """Send the entry unless its slot was already claimed (by a holder that died)."""
        if not self._claim_slot(entry):
            logger.warning("beat %s: %s after %s was already sent; not sending it again",
                           self._identity, entry.name, _instant(entry.last_run_at))
            return None
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def close(self) -> None:
        """Hand over at once on a clean stop instead of making the standby wait out the TTL."""
        super().close()
        if self._leading:
            # Expired or unreachable: then the standby takes over after the TTL.
            with contextlib.suppress(LockNotOwnedError, RedisError):
                self._lock.release()

    def _claim_slot(self, entry: ModelEntry) -> bool:
        """SET NX on the slot; a Redis error propagates (Celery logs it; nothing is sent)."""
        key = f"{BEAT_SLOT_PREFIX}{entry.name}:{_instant(entry.last_run_at)}"
        ttl = settings.BEAT_LOCK_TTL * 10  # well past any takeover
        return bool(redis_client().set(key, self._identity, nx=True, ex=ttl))

    def _hold_lock(self) -> bool:
        try:
            if self._leading:
                self._lock.reacquire()
                return True
            if self._lock.acquire(blocking=False, token=self._identity.encode()):
                self._take_over()
                return True
        except LockNotOwnedError:
            self._leading = False
            logger.warning("beat %s lost the scheduler lock; standing by", self._identity)
        except RedisError as exc:
            # Unreachable: send nothing (it could not be published anyway) and try again
            # next tick; an expired lock then shows as not owned.
            logger.warning("beat %s cannot reach Redis for the scheduler lock: %s",
                           self._identity, exc)
        return False

    def _take_over(self) -> None:
        """Start from what the previous holder recorded, not from this process's memory.

        One read of the schedule, marked current for the change detection (read before
        the rows, so a change in between still shows), and a heap built from it: no
        second reload, no stale invalidation to rebuild the heap from old entries.
        """
        self._leading = True
        logger.info("beat %s holds the scheduler lock and is sending schedules",
                    self._identity)
        self.sync()
        self._last_timestamp = self.Changes.last_change()
        self._schedule = self.all_as_schedule()
        self._heap = None
        self._heap_invalidated = False


def _instant(moment: datetime) -> str:
    """The same text for the same instant, whether read from the database or from memory."""
    return (moment.astimezone(UTC) if moment.tzinfo else moment).isoformat()
