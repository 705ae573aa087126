"""Platform tasks used by the ops commands (`queues probe`, `dlq drill`)."""

import time

from celery import shared_task

from workers.exceptions import PermanentError


@shared_task(bind=True, ignore_result=False, max_retries=0)
def probe(self, sent_at: float) -> dict:
    """Echo back who ran it and when, so the caller can time the round trip."""
    return {"sent_at": sent_at, "started_at": time.time(), "worker": self.request.hostname}


@shared_task(max_retries=0)
def dead_letter_drill(reason: str) -> None:
    """Fail permanently on purpose: proves that failures reach the dead-letter table."""
    raise PermanentError(f"dead-letter drill: {reason}")
