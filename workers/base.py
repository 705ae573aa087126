"""The base class of every task in the project (set as the app's `task_cls`).

A task author states policy on the decorator, in one line, for example
`@shared_task(max_retries=8, retry_backoff_max=300, time_limit=600, soft_time_limit=540)`;
everything not stated comes from here and from settings.
"""

from datetime import UTC, datetime

from celery.contrib.django.task import DjangoTask
from django.conf import settings

from workers.deliveries import redelivery_count
from workers.exceptions import RedeliveryLimitExceeded, TransientError


class PlatformTask(DjangoTask):
    """Retries transient errors with capped exponential backoff and full jitter.

    Anything else (PermanentError, or an undeclared exception, which is a bug) fails at
    once and lands in the dead-letter table through the `task_failure` signal.
    """

    Request = "workers.request:PlatformRequest"

    autoretry_for = (TransientError,)
    max_retries = settings.TASK_MAX_RETRIES
    retry_backoff = settings.TASK_RETRY_BACKOFF
    retry_backoff_max = settings.TASK_RETRY_BACKOFF_MAX
    retry_jitter = True  # full jitter: spreads a thundering herd after an outage

    def before_start(self, task_id, args, kwargs):
        """Refuse to run a message that already came back too often."""
        delivery_info = self.request.delivery_info or {}
        if not delivery_info.get("redelivered"):
            return
        redeliveries = redelivery_count(task_id=task_id, retries=self.request.retries)
        if redeliveries + 1 > settings.TASK_MAX_DELIVERIES:
            raise RedeliveryLimitExceeded(
                f"delivered {redeliveries + 1} times (limit {settings.TASK_MAX_DELIVERIES}): "
                "earlier deliveries lost their worker"
            )

    def apply_async(self, args=None, kwargs=None, **options):
        """Reject a delay the broker cannot hold safely.

        On Redis a message waiting for its countdown is unacked; past the visibility
        timeout it is handed to a second worker and runs twice.
        """
        delay = _delay_seconds(options.get("countdown"), options.get("eta"))
        if delay > settings.TASK_MAX_COUNTDOWN:
            raise ValueError(
                f"{self.name}: a delay of {delay:.0f}s exceeds TASK_MAX_COUNTDOWN "
                f"({settings.TASK_MAX_COUNTDOWN}s); schedule it with beat instead"
            )
        return super().apply_async(args, kwargs, **options)


def _delay_seconds(countdown: float | None, eta: datetime | str | None) -> float:
    if countdown is not None:
        return float(countdown)
    if eta is None:
        return 0.0
    if isinstance(eta, str):
        eta = datetime.fromisoformat(eta)
    if eta.tzinfo is None:
        eta = eta.replace(tzinfo=UTC)
    return (eta - datetime.now(UTC)).total_seconds()
