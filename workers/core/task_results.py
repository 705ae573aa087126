"""What `get_result()` reads for a standard task (workers/core/task_backend.py): one JSON
record per result id in the platform's Redis, rewritten at each step and expiring
TASK_RESULT_TTL seconds after the last.

Redis, not Celery's result backend: the template runs without one (every Celery task
ignores its result), and a record here outlives the worker that wrote it. Errors are kept
as their exception's path and a redacted traceback, for whoever reads results.
"""

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from workers.core.platform_redis import redis_client
from workers.core.redaction import redact_text

KEY = "workers:task-result:{id}"

READY, RUNNING, SUCCESSFUL, FAILED = "READY", "RUNNING", "SUCCESSFUL", "FAILED"


@dataclass
class ResultRecord:
    task_path: str
    args: list[Any]
    kwargs: dict[str, Any]
    status: str = READY
    enqueued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    last_attempted_at: str | None = None
    worker_ids: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    return_value: Any = None

    def moment(self, name: str) -> datetime | None:
        value = getattr(self, name)
        return datetime.fromisoformat(value) if value else None


def result_load(*, result_id: str) -> ResultRecord | None:
    raw = redis_client().get(KEY.format(id=result_id))
    return None if raw is None else ResultRecord(**json.loads(raw))


def result_save(*, result_id: str, record: ResultRecord) -> None:
    redis_client().set(KEY.format(id=result_id), json.dumps(asdict(record)),
                       ex=settings.TASK_RESULT_TTL)


def result_enqueued(*, result_id: str, task_path: str, args: list[Any],
                    kwargs: dict[str, Any], at: datetime | None) -> ResultRecord:
    record = ResultRecord(task_path=task_path, args=args, kwargs=kwargs,
                          enqueued_at=(at or timezone.now()).isoformat())
    result_save(result_id=result_id, record=record)
    return record


def result_started(*, result_id: str, record: ResultRecord | None, task_path: str,
                   args: list[Any], kwargs: dict[str, Any], worker_id: str) -> ResultRecord:
    """RUNNING, one more attempt by `worker_id`, on the `record` just loaded; a replay from
    the dead letters (a new id, no record) starts a record of its own."""
    record = record or ResultRecord(task_path=task_path, args=args, kwargs=kwargs,
                                    enqueued_at=_now())
    now = _now()
    record.status = RUNNING
    record.started_at = record.started_at or now
    record.last_attempted_at = now
    record.worker_ids.append(worker_id)
    result_save(result_id=result_id, record=record)
    return record


def result_finished(*, result_id: str, record: ResultRecord, status: str,
                    return_value: Any = None, error: BaseException | None = None,
                    traceback: str = "") -> ResultRecord:
    """SUCCESSFUL or FAILED; READY again when the error is retried."""
    record.status = status
    if status != READY:
        record.finished_at = _now()
    record.return_value = return_value
    if error is not None:
        kind = type(error)
        record.errors.append({"exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
                              "traceback": redact_text(traceback)})
    result_save(result_id=result_id, record=record)
    return record


def _now() -> str:
    return timezone.now().isoformat()
