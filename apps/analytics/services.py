"""Event ingestion, rollups, retention and CSV exports."""

import csv
import json
import tempfile
from datetime import date, datetime, time, timedelta
from time import monotonic
from typing import Any

from django.core.files import File
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from apps.analytics.models import Event, ExportJob, HourlyRollup
from apps.analytics.validation import ValidEvent
from workers.core.csv_cells import spreadsheet_safe
from workers.core.exceptions import PermanentError

EXPORT_COLUMNS = ("id", "name", "occurred_at", "properties")
EXPORT_READ_CHUNK = 2000


class ExportNotFound(PermanentError):
    """The export job is gone: nothing to write."""


#: The hourly rollup runs this long after its hour ends (ANALYTICS rollup schedule).
ROLLUP_DELAY = timedelta(minutes=5)


@transaction.atomic
def events_store(*, events: list[ValidEvent]) -> int:
    """Insert a validated batch in one statement; return how many were stored.

    Events that arrive after their hour was rolled up (a mobile client back online) have
    that hour recounted, enqueued in this transaction: the recount exists iff the events do.
    """
    from apps.analytics.tasks import recount_hour

    Event.objects.bulk_create(
        Event(name=e.name, occurred_at=e.occurred_at, properties=e.properties) for e in events)
    rolled_up_before = timezone.now() - ROLLUP_DELAY - timedelta(hours=1)
    for hour in sorted({_hour_of(e.occurred_at) for e in events}):
        if hour < rolled_up_before:
            recount_hour.enqueue(hour=hour.isoformat())
    return len(events)


def _hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@transaction.atomic
def rollup_hour(*, hour: datetime) -> int:
    """Recount one hour into HourlyRollup and return how many names it covered.

    An upsert, so running it again (a retry, a redelivery, a manual backfill) gives the
    same numbers instead of adding them twice.
    """
    start = hour.replace(minute=0, second=0, microsecond=0)
    counts = (
        Event.objects.filter(occurred_at__gte=start, occurred_at__lt=start + timedelta(hours=1))
        .values("name")
        .annotate(total=Count("id"))
    )
    rows = [HourlyRollup(hour=start, name=row["name"], count=row["total"]) for row in counts]
    HourlyRollup.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["hour", "name"], update_fields=["count"]
    )
    return len(rows)


def events_delete_older_than(*, cutoff: datetime, batch_size: int,
                             max_seconds: float = 300) -> int:
    """Delete raw events before `cutoff` a batch at a time; return how many went.

    Small deletes keep locks and WAL bursts short, so ingestion carries on meanwhile; the
    time box keeps the job inside its hard limit (a backlog finishes on the next nights).
    """
    deleted = 0
    deadline = monotonic() + max_seconds
    while monotonic() < deadline:
        ids = list(Event.objects.filter(occurred_at__lt=cutoff).order_by("id")
                   .values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += Event.objects.filter(id__in=ids).delete()[0]
    return deleted


@transaction.atomic
def export_request(*, owner_id: int, date_from: date, date_to: date) -> ExportJob:
    """Record the export and start it after commit."""
    job = ExportJob.objects.create(owner_id=owner_id, date_from=date_from, date_to=date_to)
    export_start(export_id=job.pk)
    return job


def export_start(*, export_id: int) -> None:
    from apps.analytics.tasks import run_export

    transaction.on_commit(lambda: run_export.delay(export_id))


def export_run(*, export_id: int) -> ExportJob:
    """Write the CSV, publishing progress as it goes; a redelivered job starts over.

    Whatever stops the export (a range it cannot cover, the database, the storage) leaves
    the job failed with the reason, never pending or running."""
    try:
        job = ExportJob.objects.get(pk=export_id)
    except ExportJob.DoesNotExist as exc:
        raise ExportNotFound(f"export {export_id} does not exist") from exc
    if job.status == ExportJob.Status.DONE:
        return job
    try:
        start = datetime.combine(job.date_from, time.min,
                                 tzinfo=timezone.get_current_timezone())
        end = datetime.combine(job.date_to + timedelta(days=1), time.min, tzinfo=start.tzinfo)
        rows = Event.objects.filter(occurred_at__gte=start, occurred_at__lt=end).order_by("id")
        total = rows.count()
        _export_update(job, status=ExportJob.Status.RUNNING, progress=0,
                       started_at=timezone.now(), error="")
        with tempfile.TemporaryFile("w+", newline="") as buffer:
            writer = csv.writer(buffer)
            writer.writerow(EXPORT_COLUMNS)
            written = 0
            for event in rows.iterator(chunk_size=EXPORT_READ_CHUNK):
                # JSON, as ingested: a dict's Python repr is not readable elsewhere.
                writer.writerow([spreadsheet_safe(cell) for cell in (
                    event.pk, event.name, event.occurred_at.isoformat(),
                    json.dumps(event.properties, ensure_ascii=False))])
                written += 1
                if written % EXPORT_READ_CHUNK == 0:
                    _export_update(job, progress=min(99, written * 100 // total))
            buffer.seek(0)
            job.file.save(f"events-{job.pk}-{job.date_from}-{job.date_to}.csv", File(buffer),
                          save=False)
    except Exception as exc:
        export_mark_failed(export_id=job.pk, error=str(exc) or type(exc).__name__)
        raise
    _export_update(job, status=ExportJob.Status.DONE, progress=100, row_count=written,
                   file=job.file.name, finished_at=timezone.now())
    return job


def export_mark_failed(*, export_id: int, error: str) -> None:
    """An unfinished export ends failed, with the reason; one already finished or failed
    keeps its outcome (a replay that won, or the reason given first)."""
    ExportJob.objects.filter(
        pk=export_id, status__in=[ExportJob.Status.PENDING, ExportJob.Status.RUNNING]
    ).update(status=ExportJob.Status.FAILED, error=error[:2000], finished_at=timezone.now())


def _export_update(job: ExportJob, **fields: Any) -> None:
    """Commit progress at once, so the status page sees it while the export runs."""
    ExportJob.objects.filter(pk=job.pk).update(**fields)
    for name, value in fields.items():
        if name != "file":
            setattr(job, name, value)
