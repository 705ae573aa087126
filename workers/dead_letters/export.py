"""Export a selection of dead letters as CSV or JSON, payloads and messages redacted (as
the admin shows them), for a spreadsheet, a ticket or an incident review."""

import csv
import io
import json
from typing import Any

from django.db.models import QuerySet

from workers.core.csv_cells import spreadsheet_safe
from workers.core.redaction import redact_call
from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.dead_letters.shown import redacted_text

COLUMNS = ("id", "task_id", "task_name", "queue", "status", "fingerprint", "exception_type",
           "message", "attempts", "failed_at", "worker", "requeue_count", "replay_of_id",
           "args", "kwargs")
FORMATS = ("csv", "json")


def _record(row: DeadLetter) -> dict[str, object]:
    args, kwargs = redact_call(task_name=row.task_name, args=row.args, kwargs=row.kwargs)
    return {"id": row.pk, "task_id": row.task_id, "task_name": row.task_name,
            "queue": row.queue, "status": row.status, "fingerprint": row.fingerprint,
            "exception_type": row.exception_type,
            "message": redacted_text(row=row, text=row.message),
            "attempts": row.attempts, "failed_at": row.failed_at.isoformat(),
            "worker": row.worker, "requeue_count": row.requeue_count,
            "replay_of_id": row.replay_of_id, "args": args, "kwargs": kwargs}


def dead_letters_export(*, rows: QuerySet[DeadLetter], file_format: str, actor: str,
                        detail: dict[str, Any] | None = None) -> str:
    """The rows, oldest id first, as `file_format`; recorded in the audit trail."""
    if file_format not in FORMATS:
        raise ValueError(f"export format is csv or json, not {file_format!r}")
    records = [_record(row) for row in rows.order_by("pk").iterator()]
    dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.EXPORTED, count=len(records),
                      detail={"format": file_format, **(detail or {})})
    if file_format == "json":
        return json.dumps(records, indent=2)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for record in records:
        # A task name or message comes from whoever published the job: a cell starting
        # with "=" would run as a formula in the operator's spreadsheet.
        writer.writerow({key: spreadsheet_safe(value) for key, value in {
            **record, "args": json.dumps(record["args"]),
            "kwargs": json.dumps(record["kwargs"])}.items()})
    return out.getvalue()
