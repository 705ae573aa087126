"""The probe `manage.py queues probe` times (name as in workers/core/tasks.py)."""

import time
from typing import Any

from celery import Task, shared_task

from workers.core.routing import CRITICAL


@shared_task(name="workers.tasks.probe", route=CRITICAL, bind=True, ignore_result=False,
             max_retries=0)
def probe(self: Task, sent_at: float) -> dict[str, Any]:
    """Echo back who ran it and when, so the caller can time the round trip."""
    return {"sent_at": sent_at, "started_at": time.time(), "worker": self.request.hostname}
