"""What beat runs every minute over the dead letters: snoozes that ended, stalled redrives,
retention."""

from dataclasses import dataclass
from datetime import datetime

from workers.dead_letters.lifecycle import dead_letters_wake_snoozed
from workers.dead_letters.redrive import redrives_restart_stalled
from workers.dead_letters.retention import dead_letters_apply_retention


@dataclass(frozen=True)
class Housekeeping:
    woken: int
    redrives_restarted: int
    purged: int


def dead_letters_housekeep(*, now: datetime) -> Housekeeping:
    return Housekeeping(woken=dead_letters_wake_snoozed(now=now),
                        redrives_restarted=redrives_restart_stalled(now=now),
                        purged=dead_letters_apply_retention(now=now))
