"""One beat at a time: the database scheduler behind a Redis lock with expiry and renewal.

Every beat process ticks, but only the lock holder sends anything; the others are
standbys. The holder renews the lock on every tick (at least every
`beat_max_loop_interval` seconds); if it dies the lock expires after BEAT_LOCK_TTL
seconds and a standby takes it, re-reads each entry's last run time from the database
(written after every send, `beat_sync_every = 1`) and carries on from there.
"""

import contextlib
import logging
import os
import socket

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler
from redis.exceptions import LockNotOwnedError, RedisError

from workers.redis_store import redis_client

logger = logging.getLogger(__name__)

BEAT_LOCK_KEY = "workers:beat:lock"


class LockedDatabaseScheduler(DatabaseScheduler):
    def __init__(self, *args, **kwargs):
        self._lock = redis_client().lock(BEAT_LOCK_KEY, timeout=settings.BEAT_LOCK_TTL,
                                         thread_local=False)
        self._leading = False
        self._identity = f"{socket.gethostname()}:{os.getpid()}"
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs) -> float:
        if not self._hold_lock():
            return self.max_interval
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        """Hand over at once on a clean stop instead of making the standby wait out the TTL."""
        super().close()
        if self._leading:
            # Expired or unreachable: then the standby takes over after the TTL.
            with contextlib.suppress(LockNotOwnedError, RedisError):
                self._lock.release()

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
        """Start from what the previous holder recorded, not from this process's memory."""
        self._leading = True
        logger.info("beat %s holds the scheduler lock and is sending schedules",
                    self._identity)
        self.sync()
        self._schedule = self.all_as_schedule()
        self._heap = None
