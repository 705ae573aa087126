"""The app's task-message builder (`Celery(amqp=...)` in config/celery.py): the argument
reprs every message carries are redacted; the arguments themselves stay exact. It also
hands out the batch publisher (workers/runtime/batch_publish.py).

Celery writes `argsrepr` and `kwargsrepr` into each message's headers and into its
task-sent event. Workers log them, send them in their task-received events and answer
`inspect` with them: that is what Flower shows of a task's arguments. They are built here,
where Celery builds them, so every publish is covered (calls, retries, beat, the outbox,
dead-letter replays sent by name) and the task-sent event with the headers: a
`before_task_publish` handler sees the headers only. Positional arguments are named by the
task's signature (`redact_call`). The private name is checked by
workers/runtime/tests/test_celery_internals.py.
"""

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from functools import cached_property
from typing import Any

from celery.app.amqp import AMQP
from celery.utils.saferepr import saferepr
from django.conf import settings

from workers.core.redaction import REDACTED, redact_call, redact_text
from workers.runtime.batch_publish import BatchSender, batch_publishing, built

logger = logging.getLogger(__name__)


class RedactingAMQP(AMQP):
    def publishing_batch(self) -> AbstractContextManager[BatchSender]:
        """A producer whose publishes go out together (workers/runtime/batch_publish.py):
        here, where code that may not import the runtime (the outbox) finds it. On a
        Redis with replicas, BROKER_MIN_REPLICAS of them must hold a batch before it
        counts as sent (docs/scaling.md)."""
        return batch_publishing(app=self.app, replicas=settings.BROKER_MIN_REPLICAS,
                                replica_timeout_ms=settings.BROKER_REPLICA_TIMEOUT_MS)

    def as_task_v2(self, task_id: str, name: str, args: Any = None, kwargs: Any = None,
                   *more: Any, **options: Any) -> Any:
        """Celery's, given the redacted reprs (a call of the wrong shape is left to
        Celery to refuse). While a batch records a call, what it was given is kept for
        the calls like it (workers/runtime/batch_publish.py)."""
        recording = getattr(built, "calls", None)
        given = (more, dict(options))
        if isinstance(args, list | tuple | None) and isinstance(kwargs, Mapping | None):
            options["argsrepr"], options["kwargsrepr"] = self._shown(
                name, args, kwargs, options.get("argsrepr"), options.get("kwargsrepr"))
        message = super().as_task_v2(task_id, name, args, kwargs, *more, **options)
        if recording is not None:
            # The origin too: the same for every call from this process, and Celery
            # builds the node name anew for each (gethostname and all).
            given[1].setdefault("origin", message.headers["origin"])
            recording.append((*given, dict(message.properties)))
        return message

    def _shown(self, name: str, args: list[Any] | tuple[Any, ...] | None,
               kwargs: Mapping[str, Any] | None, argsrepr: str | None,
               kwargsrepr: str | None) -> tuple[str, str]:
        """Celery's reprs (same size and depth limits) of the redacted call; a repr the
        caller passed is redacted as text. Fails closed: a repr that cannot be redacted
        is not shown."""
        try:
            shown_args, shown_kwargs = redact_call(task_name=name, args=args, kwargs=kwargs)
            return (
                redact_text(argsrepr) if argsrepr is not None else self._repr(
                    tuple(shown_args) if isinstance(args, tuple) else shown_args,
                    self.argsrepr_maxsize),
                redact_text(kwargsrepr) if kwargsrepr is not None else self._repr(
                    shown_kwargs, self.kwargsrepr_maxsize))
        except Exception:
            logger.exception("could not redact the arguments shown for %s", name)
            return REDACTED, REDACTED

    def _repr(self, value: Any, maxsize: int) -> str:
        """Celery's saferepr; an empty call's repr without it (a bulk of jobs without
        arguments spent a fifth of its publish there)."""
        if not value:
            return repr(value)
        return saferepr(value, maxsize, maxlevels=self._repr_maxlevels)

    @cached_property
    def _repr_maxlevels(self) -> int:
        """Read once: a lookup in the app's configuration costs microseconds per message."""
        return int(self.app.conf.task_repr_maxlevels)
