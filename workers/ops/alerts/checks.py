"""The periodic checks: thresholds crossed (each an alert, once per window), digests of
ended windows, and deliveries due for a retry.

They read only Redis and the database, never a queue, so a dead pool cannot hold up the
check that reports it; workers/ops/alerts/receivers.py runs them from any live beat or
worker, and `manage.py alerts check` by hand. When nothing at all is alive, the
Prometheus rules in deploy/observability/ fire on the same figures.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.urls import reverse

from workers.core.outbox import outbox_pending_stats
from workers.core.queue_stats import queue_stats
from workers.dead_letters.spool import SET_ASIDE_KEY, dead_letter_spool_set_aside_size
from workers.ops.alerts.models import Alert
from workers.ops.alerts.services import alert_raise, alerts_deliver_pending, alerts_flush_digests
from workers.ops.alerts.windows import watching_since
from workers.runtime.heartbeat_records import (
    live_workers_by_queue,
    read_beat_tick,
    read_worker_heartbeats,
)


@dataclass(frozen=True)
class CheckOutcome:
    raised: list[Alert]
    digests: list[Alert]
    delivered: int


def alerts_run_checks(*, now: datetime) -> CheckOutcome:
    """Thresholds, then digests of ended windows, then whatever is due for delivery."""
    raised = alerts_check_thresholds(now=now)
    digests = alerts_flush_digests(now=now)
    return CheckOutcome(raised=raised, digests=digests,
                        delivered=alerts_deliver_pending(now=now))


def alerts_check_thresholds(*, now: datetime) -> list[Alert]:
    """Check every threshold, raise an alert for each crossed; return those sent now."""
    raised = []
    for key, title, text, link in _crossed(now=now):
        alert = alert_raise(kind=Alert.Kind.THRESHOLD, key=key, title=title, text=text,
                            link=link, deliver_now=True)
        if alert is not None:
            raised.append(alert)
    return raised


def _crossed(*, now: datetime) -> list[tuple[str, str, str, str]]:
    base = settings.ALERTS_BASE_URL.rstrip("/")
    crossed = []
    limits = settings.ALERTS_QUEUE_MAX_AGE
    for stats in queue_stats(queues=tuple(limits), now=now.timestamp()):
        age = stats.oldest_age_seconds
        if age is not None and age > limits[stats.name]:
            crossed.append((f"queue-age:{stats.name}",
                            f"Queue {stats.name}: messages wait too long",
                            f"The oldest of {stats.waiting} waiting message(s) has waited "
                            f"{age:.0f} s; the limit is {limits[stats.name]:g} s.", ""))
    _, oldest_age = outbox_pending_stats(now=now)
    if oldest_age is not None and oldest_age > settings.ALERTS_OUTBOX_MAX_AGE:
        crossed.append(("outbox-age", "Outbox: jobs are not being published",
                        f"The oldest unpublished job has waited {oldest_age:.0f} s; the limit is "
                        f"{settings.ALERTS_OUTBOX_MAX_AGE:g} s. Is the broker reachable, "
                        "and is beat running the outbox sweep?",
                        f"{base}{reverse('admin:workers_outboxmessage_changelist')}"
                        "?published_at__isnull=True"))
    set_aside = dead_letter_spool_set_aside_size()
    if set_aside:
        crossed.append(("dead-letter-spool-set-aside", "Dead letters the database refused",
                        f"{set_aside} failure(s) kept in the Redis spool during an outage "
                        f"could not be stored and were set aside in {SET_ASIDE_KEY}; see "
                        "docs/reliability.md (the spool) to read and restore them.", ""))
    # What has never been seen is missing only once the checks have watched long enough
    # for it to show: a fresh deploy, or Redis restarted, is not an outage.
    watched = now.timestamp() - watching_since(now=now.timestamp())
    tick = read_beat_tick()
    silence = watched if tick is None else now.timestamp() - tick
    if silence > settings.ALERTS_BEAT_MAX_SILENCE:
        crossed.append(("beat-silent", "Beat is silent: no scheduled task is being sent",
                        f"No beat has held the scheduler lock and ticked for {silence:.0f} s; "
                        f"the limit is {settings.ALERTS_BEAT_MAX_SILENCE:g} s.", ""))
    live = live_workers_by_queue(read_worker_heartbeats(), queues=limits,
                                 now=now.timestamp())
    for queue, count in live.items():
        if not count and watched > settings.METRICS_WORKER_UP_AGE:
            crossed.append((f"no-worker:{queue}", f"Pool {queue}: no live worker",
                            f"No worker consuming {queue} has sent a heartbeat in the last "
                            f"{settings.METRICS_WORKER_UP_AGE:g} s; its jobs wait.", ""))
    return crossed
