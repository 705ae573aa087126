"""What beat runs every minute over the dead letters: snoozes that ended, stalled redrives,
retention."""

from datetime import datetime

from workers.dead_letters.lifecycle import dead_letters_wake_snoozed
from workers.dead_letters.redrive import redrives_restart_stalled
from workers.dead_letters.retention import dead_letters_apply_retention


def dead_letters_housekeep(*, now: datetime) -> None:
    dead_letters_wake_snoozed(now=now)
    redrives_restart_stalled(now=now)
    dead_letters_apply_retention(now=now)
