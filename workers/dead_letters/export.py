"""Export a selection of dead letters as CSV or JSON, payloads redacted, for a spreadsheet,
a ticket or an incident review."""

import csv
import io
import json
from typing import Any

from django.db.models import QuerySet

from workers.api.redaction import redact, redact_text
from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.models import DeadLetter, DeadLetterEvent

COLUMNS = ("id", "task_id", "task_name", "queue", "status", "fingerprint", "exception_type",
           "message", "attempts", "failed_at", "worker", "requeue_count", "replay_of_id",
           "args", "kwargs")
FORMATS = ("csv", "json")


def _record(row: DeadLetter) -> dict[str, object]:
    return {"id": row.pk, "task_id": row.task_id, "task_name": row.task_name,
            "queue": row.queue, "status": row.status, "fingerprint": row.fingerprint,
            "exception_type": row.exception_type, "message": redact_text(row.message),
            "attempts": row.attempts, "failed_at": row.failed_at.isoformat(),
            "worker": row.worker, "requeue_count": row.requeue_count,
            "replay_of_id": row.replay_of_id, "args": redact(row.args),
            "kwargs": redact(row.kwargs)}


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
        writer.writerow({**record, "args": json.dumps(record["args"]),
                         "kwargs": json.dumps(record["kwargs"])})
    return out.getvalue()
