"""The base class of every task in the project (set as the app's `task_cls`).

A task author states policy on the decorator, in one line, for example
`@shared_task(max_retries=8, retry_backoff_max=300, time_limit=600, soft_time_limit=540)`;
everything not stated comes from here and from settings.
"""

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celery.contrib.django.task import DjangoTask
from celery.result import AsyncResult
from celery.utils import uuid
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from workers.core.dedup import dedup_claim, dedup_release
from workers.core.deliveries import redelivery_count
from workers.core.exceptions import RedeliveryLimitExceeded, TransientError
from workers.core.headers import DEDUP_HEADER
from workers.core.routing import queue_for
from workers.core.task_ids import task_id_usable

if TYPE_CHECKING:
    from workers.core.models import OutboxMessage

logger = logging.getLogger(__name__)


class PlatformTask(DjangoTask[Any, Any]):
    """Retries transient errors with capped exponential backoff and full jitter.

    Anything else (PermanentError, or an undeclared exception, which is a bug) fails at
    once and lands in the dead-letter table through the `task_failure` signal.
    """

    Request = "workers.runtime.request:PlatformRequest"

    # A database that is restarting, failing over or out of connections (Django's
    # OperationalError and InterfaceError) is transient too: a PostgreSQL restart should
    # delay the jobs in flight, not dead-letter them.
    autoretry_for = (TransientError, OperationalError, InterfaceError)
    max_retries = settings.TASK_MAX_RETRIES
    retry_backoff = settings.TASK_RETRY_BACKOFF
    retry_backoff_max = settings.TASK_RETRY_BACKOFF_MAX
    retry_jitter = True  # full jitter: spreads a thundering herd after an outage

    #: Run the body in a transaction that also records an idempotency key, so a
    #: redelivered, re-published or requeued task does not repeat its effects.
    effect_once = False
    #: The key, formatted with the call's arguments, e.g. "payment-event:{event_id}".
    #: None: the task id (repeats of one message; a requeue from the dead letters runs).
    effect_key: str | None = None
    #: The service guards its own effect (a row lock and a status it commits with it),
    #: so a second run of the same call does nothing. For effects that must record
    #: failed attempts: an effect-once transaction would roll those back with the error.
    idempotent = False
    #: The queue the task runs on, CRITICAL or BULK (`workers.core.routing`).
    route: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give only effect-once tasks the wrapping `__call__`.

        The worker calls `run` directly unless a task class defines `__call__`; keeping it
        off every other task keeps their hot path as plain Celery's.
        """
        super().__init_subclass__(**kwargs)
        if cls.effect_once and "__call__" not in vars(cls):
            cls.__call__ = _call_effect_once  # type: ignore[method-assign,assignment]

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse to run a message that already came back too often."""
        delivery_info = self.request.delivery_info or {}
        if not delivery_info.get("redelivered"):
            return
        redeliveries = redelivery_count(task_id=task_id, retries=self.request.retries,
                                        headers=self.request)
        if redeliveries + 1 > settings.TASK_MAX_DELIVERIES:
            raise RedeliveryLimitExceeded(
                f"delivered {redeliveries + 1} times (limit {settings.TASK_MAX_DELIVERIES}): "
                "earlier deliveries lost their worker"
            )

    def apply_async(  # type: ignore[override]  # adds dedup_key, dedup_ttl
            self, args: tuple[Any, ...] | list[Any] | None = None,
            kwargs: dict[str, Any] | None = None, *, dedup_key: str | None = None,
            dedup_ttl: int | None = None, **options: Any) -> AsyncResult[Any]:
        """Send the task; with `dedup_key`, not while an equal job waits or runs. A delay
        past TASK_MAX_COUNTDOWN is refused (`delay_check`)."""
        delay_check(name=self.name, countdown=options.get("countdown"), eta=options.get("eta"))
        if options.get("task_id") is not None and not task_id_usable(options["task_id"]):
            raise ValueError(f"task_id {options['task_id']!r} is not non-empty text UTF-8 "
                             "can carry: the worker would refuse the message")
        args = tuple(args) if args is not None else None
        if dedup_key is None:
            return super().apply_async(args, kwargs, **options)
        task_id = options.setdefault("task_id", uuid())
        holder = dedup_claim(key=dedup_key, task_id=task_id,
                             ttl=dedup_ttl or settings.TASK_DEDUP_TTL)
        if holder is not None:
            return self.AsyncResult(holder)
        options["headers"] = {**(options.get("headers") or {}), DEDUP_HEADER: dedup_key}
        try:
            return super().apply_async(args, kwargs, **options)
        except BaseException:
            dedup_release(key=dedup_key, task_id=task_id)
            raise

    def delay_via_outbox(self, *args: Any, **kwargs: Any) -> "OutboxMessage":
        """Enqueue in the current database transaction: the job exists iff it commits.

        Only for effect-once or idempotent tasks, since the outbox may publish a row twice
        (a crash after the publish, before the row is marked) and only they make that
        harmless.
        """
        from workers.core.outbox import outbox_enqueue

        if not (self.effect_once or self.idempotent):
            raise TypeError(f"{self.name} is neither effect_once nor idempotent; the outbox "
                            "may publish a job twice")
        return outbox_enqueue(task_name=self.name, args=args, kwargs=kwargs,
                              queue=queue_for(self.name, self))


def _call_effect_once(self: PlatformTask, *args: Any, **kwargs: Any) -> Any:
    """Run the body in a transaction that first records the task's effect key.

    A database error while opening that transaction or claiming the key happens outside
    `run`, where `autoretry_for` does not reach; it is retried here with the same backoff,
    so a PostgreSQL restart delays an effect-once job instead of dead-lettering it.
    """
    from workers.core.effects import effect_key

    # autoretry_for wraps `run` in (*args, **kwargs); inspect.signature follows the
    # wrapper's __wrapped__ to the real one, which the key needs.
    key = effect_key(template=self.effect_key, run=self.run, task_id=self.request.id or "",
                     args=args, kwargs=kwargs)
    try:
        return _run_claimed(self, key, args, kwargs)
    except (OperationalError, InterfaceError) as exc:
        raise self.retry(exc=exc, countdown=get_exponential_backoff_interval(
            factor=int(max(1, self.retry_backoff)), retries=self.request.retries,
            maximum=self.retry_backoff_max, full_jitter=self.retry_jitter)) from exc


def _run_claimed(task: PlatformTask, key: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], *, checked: bool = False) -> Any:
    """The claim and the body in one transaction; the claim, the first statement on the
    kept connection, stands in for Django's health check of it (a `SELECT 1` round trip
    per task): a connection found dead by the claim is replaced and the claim made again,
    as the health check would have, before anything ran."""
    from workers.core.effects import effect_claim, effect_connection_unchecked

    unchecked = not checked and effect_connection_unchecked()
    claimed: bool | None = None
    try:
        with transaction.atomic():
            claimed = effect_claim(key=key, task_name=task.name, task_id=task.request.id or "")
            if not claimed:
                logger.info("%s[%s]: effects of %s already committed; skipped",
                            task.name, task.request.id, key)
                return None
            return DjangoTask.__call__(task, *args, **kwargs)
    except (OperationalError, InterfaceError):
        if not unchecked or claimed is not None:
            raise
    connection.close_if_unusable_or_obsolete()  # closed if dead; checked before reuse
    return _run_claimed(task, key, args, kwargs, checked=True)


def delay_check(*, name: str, countdown: float | None = None,
                eta: datetime | str | None = None) -> None:
    """Refuse a delay the broker cannot hold safely: on Redis a message waiting for its
    countdown is unacked, and past the visibility timeout it is handed to a second worker
    and runs twice."""
    delay = _delay_seconds(countdown, eta)
    if delay > settings.TASK_MAX_COUNTDOWN:
        raise ValueError(f"{name}: a delay of {delay:.0f}s exceeds TASK_MAX_COUNTDOWN "
                         f"({settings.TASK_MAX_COUNTDOWN}s); schedule it with beat instead")


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
