"""The operations console: the landing page of "Background jobs" in the admin.

It answers "is work flowing?" from what the platform already keeps, with no Prometheus:
each queue's depth and oldest age (the broker), its live workers (their heartbeats), and
its last hour minute by minute (the task history the metrics flush writes); each worker;
the jobs waiting for a retry, with their last error (redacted);
each beat entry, which those who may change schedules can run now. Every figure is one
`/metrics` exposes under the same meaning, and a queue turns amber or red on the
thresholds of the alert rules (deploy/observability/prometheus-rules.yml).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.exceptions import ImproperlyConfigured
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.safestring import SafeString
from django_celery_beat.models import PeriodicTask

from workers.core.broker_health import broker_reachable
from workers.core.queue_stats import queue_stats
from workers.core.redaction import redact_text, visible_text
from workers.core.routing import QUEUES
from workers.core.task_registry import project_task
from workers.ops.schedules import schedule_run_now
from workers.ops.sparklines import sparkline
from workers.runtime.attempts import retrying_now
from workers.runtime.heartbeat_records import (
    beat_lock_holder,
    live_workers_by_queue,
    read_worker_heartbeats,
    worker_is_up,
)
from workers.runtime.task_history import history_hours, history_minutes, history_series

logger = logging.getLogger(__name__)

HOUR_MINUTES = 60
HISTORY_HOURS_SHOWN = 72
STALLED_MINUTES = 10  # CeleryQueueStalled: messages wait, nothing started for this long
# CeleryTaskHighFailRate: a task failed more than 5 % of its runs finished on a queue in the
# last 10 minutes.
FAILURE_RATE_LIMIT = 0.05
FAILURE_RATE_MINUTES = 10
RETRYING_SHOWN = 50


@dataclass
class QueuePanel:
    name: str
    waiting: int
    oldest_age: float | None
    age_limit: float
    live_workers: int
    started: list[int] = field(default_factory=lambda: [0] * HOUR_MINUTES)
    succeeded: list[int] = field(default_factory=lambda: [0] * HOUR_MINUTES)
    failed: list[int] = field(default_factory=lambda: [0] * HOUR_MINUTES)
    started_hours: list[int] = field(default_factory=lambda: [0] * HISTORY_HOURS_SHOWN)
    failed_hours: list[int] = field(default_factory=lambda: [0] * HISTORY_HOURS_SHOWN)
    #: (task, share of its runs that failed) over FAILURE_RATE_MINUTES, where over the limit
    failing_tasks: list[tuple[str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    state: str = "ok"  # ok, warn or bad: green, amber, red

    @property
    def started_last_hour(self) -> int:
        return sum(self.started)

    @property
    def failed_last_hour(self) -> int:
        return sum(self.failed)

    @property
    def failure_rate(self) -> float | None:
        finished = sum(self.succeeded) + sum(self.failed)
        return sum(self.failed) / finished if finished else None

    @property
    def failure_percent(self) -> str:
        """"4.9", not a "5" that reads as the alert's threshold."""
        return f"{100 * (self.failure_rate or 0):.1f}"

    @property
    def started_line(self) -> SafeString:
        return sparkline(self.started, label=f"{self.name}: started per minute, last hour "
                                             f"({self.started_last_hour} in all)")

    @property
    def hours_line(self) -> SafeString:
        return sparkline(self.started_hours, label=f"{self.name}: started per hour, last "
                                                   f"{HISTORY_HOURS_SHOWN} hours "
                                                   f"({sum(self.started_hours)} in all)")

    @property
    def failed_hours_line(self) -> SafeString:
        return sparkline(self.failed_hours, colour="#ba2121",
                         label=f"{self.name}: failed per hour, last {HISTORY_HOURS_SHOWN} "
                               f"hours ({sum(self.failed_hours)} in all)")

    @property
    def failed_line(self) -> SafeString:
        return sparkline(self.failed, colour="#ba2121",
                         label=f"{self.name}: failed per minute, last hour "
                               f"({self.failed_last_hour} in all)")


@dataclass(frozen=True)
class WorkerRow:
    name: str
    queues: list[str]
    pool: str
    concurrency: int | None
    active: int
    heartbeat_age: float
    started_at: datetime | None
    lost: bool


@dataclass(frozen=True)
class RetryRow:
    task_id: str
    task: str
    queue: str
    attempt: int
    error: str  # redacted
    due_in: float  # seconds; negative: overdue


@dataclass(frozen=True)
class ScheduleRow:
    pk: int
    name: str
    task: str
    schedule: str
    enabled: bool
    last_run: datetime | None
    next_run: datetime | None
    runnable: bool  # a task of this project: Run now can send it
    problem: str = ""  # why beat cannot run it (the entry is still listed)


def console_queues(*, now: float) -> list[QueuePanel]:
    if not broker_reachable():  # one quick try: kombu's retries would hold the page
        raise ConnectionError("the broker does not answer")
    beats = read_worker_heartbeats()
    live = live_workers_by_queue(beats, queues=QUEUES, now=now)
    panels = {stats.name: QueuePanel(
        name=stats.name, waiting=stats.waiting, oldest_age=stats.oldest_age_seconds,
        age_limit=settings.ALERTS_QUEUE_MAX_AGE[stats.name], live_workers=live[stats.name])
        for stats in queue_stats(queues=QUEUES, now=now)}
    since = now - (HOUR_MINUTES - 1) * 60
    hours_since = now - (HISTORY_HOURS_SHOWN - 1) * 3600
    for queue, task in history_series(now=now):
        if queue not in panels:
            continue
        panel = panels[queue]
        minutes = history_minutes(queue=queue, task=task, since=since, until=now)
        for index, minute in enumerate(minutes):
            panel.started[index] += minute.started
            panel.succeeded[index] += minute.succeeded
            panel.failed[index] += minute.failed
        recent = minutes[-FAILURE_RATE_MINUTES:]
        failed = sum(minute.failed for minute in recent)
        rate = failed / (failed + sum(minute.succeeded for minute in recent)) if failed else 0.0
        if rate > FAILURE_RATE_LIMIT:
            panel.failing_tasks.append((task, rate))
        for index, hour in enumerate(history_hours(queue=queue, task=task,
                                                   since=hours_since, until=now)):
            panel.started_hours[index] += hour.started
            panel.failed_hours[index] += hour.failed
    for panel in panels.values():
        _judge(panel)
    return [panels[name] for name in QUEUES]


def console_workers(*, now: float) -> list[WorkerRow]:
    rows = []
    for name, beat in sorted(read_worker_heartbeats().items()):
        started_at = beat.get("started_at")
        rows.append(WorkerRow(
            name=name, queues=beat.get("queues", []), pool=beat.get("pool", "?"),
            concurrency=beat.get("concurrency"), active=beat.get("active", 0),
            heartbeat_age=max(0.0, now - beat["at"]),
            started_at=datetime.fromtimestamp(started_at, UTC) if started_at else None,
            lost=not worker_is_up(beat, now=now)))
    return rows


def console_retrying(*, now: float) -> list[RetryRow]:
    return [RetryRow(task_id=entry["task_id"], task=entry["task"], queue=entry["queue"],
                     attempt=entry["attempt"], due_in=entry["due_at"] - now,
                     error=visible_text(redact_text(
                         f"{entry['exception_type'].rpartition('.')[2]}: {entry['message']}")))
            for entry in retrying_now(now=now, limit=RETRYING_SHOWN)]


def console_beat_holder(*, now: float) -> str | None:
    """Which beat holds the lock (`now`: every panel is built for the same moment)."""
    return beat_lock_holder()


def console_schedules(*, now: float) -> list[ScheduleRow]:
    moment = datetime.fromtimestamp(now, UTC)
    rows = []
    for entry in PeriodicTask.objects.select_related(
            "interval", "crontab", "solar", "clocked").order_by("name"):
        next_run, problem = None, ""
        try:
            schedule = entry.schedule
            schedule.nowfun = lambda: moment  # due from this page's moment, to the second
            if entry.enabled:
                next_run = moment + max(timedelta(0), schedule.remaining_estimate(
                    entry.last_run_at or moment))
        except (ImproperlyConfigured, ValueError) as error:  # beat skips it (runtime/beat.py)
            problem = f"beat cannot compute it: {redact_text(str(error))[:200]}"
        rows.append(ScheduleRow(pk=entry.pk, name=entry.name, task=entry.task,
                                schedule=_schedule_text(entry.scheduler),
                                enabled=entry.enabled, last_run=entry.last_run_at,
                                next_run=next_run, problem=problem,
                                runnable=project_task(entry.task) is not None))
    return rows


def _schedule_text(scheduler: Any) -> str:
    """"At 05 minutes past the hour UTC", "every 10.0 seconds": what beat's admin says."""
    human = getattr(scheduler, "human_readable", None)  # a crontab's, in words
    return str(human if human is not None else scheduler)


RUN_NOW_PERMISSION = "django_celery_beat.change_periodictask"


def jobs_console(request: HttpRequest) -> HttpResponse:
    """The app index of "Background jobs", with the console above its list of models; a
    POST runs a beat entry now (for those who may change schedules)."""
    if request.method == "POST":
        if not request.user.has_perm(RUN_NOW_PERMISSION) or request.user.pk is None:
            raise PermissionDenied
        try:
            task_id = schedule_run_now(entry_name=request.POST.get("run_now", ""),
                                       user_id=request.user.pk)
        except ValueError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Sent now: {request.POST['run_now']} (task {task_id})")
        return HttpResponseRedirect(request.path)
    now = time.time()
    panels = {name: _guarded(build, now=now) for name, build in (
        ("queues", console_queues), ("workers", console_workers),
        ("schedules", console_schedules), ("retrying", console_retrying),
        ("beat_holder", console_beat_holder))}
    context: dict[str, Any] = {
        **{name: rows for name, (rows, _) in panels.items()},
        "unavailable": {name: error for name, (_, error) in panels.items() if error},
        "retrying_shown": RETRYING_SHOWN,
        "may_run_now": request.user.has_perm(RUN_NOW_PERMISSION),
        "may_view_schedules": request.user.has_perm("django_celery_beat.view_periodictask"),
        "dead_letters_url": reverse("admin:workers_deadletter_changelist"),
        "flower_url": settings.FLOWER_PUBLIC_URL.rstrip("/"),
    }
    return admin.site.app_index(request, "workers", extra_context={"console": context})


def _guarded(build: Callable[..., Any], *, now: float) -> tuple[Any, str]:
    """A panel, or why it cannot be shown: the console is opened when something is down,
    and one source down (the broker, Redis, the database) must not hide the others."""
    try:
        return build(now=now), ""
    except Exception as error:  # any source's failure, shown in place of its panel
        logger.warning("console panel %s unavailable: %s", build.__name__, error)
        return [], f"{type(error).__name__}: {redact_text(str(error))[:200]}"


def _judge(panel: QueuePanel) -> None:
    """The alert rules' verdicts on this queue, as red (bad) or amber (warn) reasons."""
    bad, warn = [], []
    if not panel.live_workers:
        bad.append("no live worker consumes it")
    if panel.oldest_age is not None and panel.oldest_age > panel.age_limit:
        bad.append(f"the oldest message has waited over {panel.age_limit:g} s")
    elif panel.oldest_age is not None and panel.oldest_age > panel.age_limit / 2:
        warn.append(f"the oldest message has waited over half of {panel.age_limit:g} s")
    if (panel.waiting and not sum(panel.started[-STALLED_MINUTES:])
            and (panel.oldest_age is None or panel.oldest_age >= STALLED_MINUTES * 60)):
        bad.append(f"messages wait and none started for {STALLED_MINUTES} minutes")
    warn += [f"{task} failed {rate:.1%} of its runs in the last {FAILURE_RATE_MINUTES} minutes"
             for task, rate in sorted(panel.failing_tasks, key=lambda item: -item[1])]
    panel.problems = bad + warn
    panel.state = "bad" if bad else "warn" if warn else "ok"
