"""Dead-letter tasks: the spool drain and the housekeeping beat runs, redrive steps, and
the drill `manage.py dlq drill` sends (names as in workers/core/tasks.py)."""

from celery import shared_task
from django.utils import timezone

from workers.core.exceptions import PermanentError
from workers.core.routing import CRITICAL
from workers.dead_letters.housekeeping import dead_letters_housekeep
from workers.dead_letters.redrive import redrive_advance
from workers.dead_letters.services import dead_letters_drain_spool


@shared_task(name="workers.tasks.drain_dead_letter_spool", route=CRITICAL,
             soft_time_limit=60, time_limit=90)
def drain_dead_letter_spool() -> None:
    dead_letters_drain_spool()


@shared_task(name="workers.tasks.housekeep_dead_letters", route=CRITICAL,
             soft_time_limit=60, time_limit=90)
def housekeep_dead_letters() -> None:
    dead_letters_housekeep(now=timezone.now())


@shared_task(name="workers.tasks.redrive_step", route=CRITICAL, max_retries=0,
             soft_time_limit=60, time_limit=90)
def redrive_step(redrive_id: int, token: str) -> None:
    """One step of a redrive; it schedules the next itself (a lost chain is restarted by
    the housekeeping above, not retried here)."""
    redrive_advance(redrive_id=redrive_id, token=token)


@shared_task(name="workers.tasks.dead_letter_drill", route=CRITICAL, max_retries=0)
def dead_letter_drill(reason: str) -> None:
    """Fail permanently on purpose: proves that failures reach the dead-letter table."""
    raise PermanentError(f"dead-letter drill: {reason}")
