"""Effect-once execution: a task's key is recorded in the same transaction as its effects.

Late acks mean a task can run again after its effects committed (the worker died before
the ack, Redis lost the ack, an operator requeued it). The key row commits or rolls back
with the effects, so a second run finds it and does nothing, and a failed run leaves no
key behind and can be retried.
"""

import inspect
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from workers.core.models import TaskEffect
from workers.core.one_round_trip import execute_in_one_round_trip, refuse_longer_than_columns


def effect_key(*, template: str | None, run: Any, task_id: str, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> str:
    """The declared key formatted with the call's arguments, or the task id.

    Raises TypeError when the arguments do not fit the task, like the call itself would.
    """
    if not template:
        return f"task:{task_id}"
    bound = _signature(run).bind(*args, **kwargs)
    bound.apply_defaults()
    return template.format(**bound.arguments)


def effect_claim(*, key: str, task_name: str, task_id: str) -> bool:
    """Record the key inside the caller's transaction; False if it was already recorded.

    One statement, so a concurrent run of the same key waits on the unique index until
    the first commits (then finds the key) or rolls back (then claims it).
    """
    refuse_longer_than_columns(TaskEffect, {"key": key, "task_name": task_name,
                                            "task_id": task_id})
    now = timezone.now()
    values = (key, task_name, task_id, now, now + timedelta(days=settings.TASK_EFFECT_TTL_DAYS))
    if connection.vendor != "postgresql":  # SQLite, `make dev`'s default: Django's cursor
        with connection.cursor() as cursor:
            cursor.execute(_claim_statement("%s"), values)
            return cursor.fetchone() is not None
    return _claim_in_one_round_trip(values)


def _claim_in_one_round_trip(values: tuple[str, str, str, datetime, datetime]) -> bool:
    """The claim with the transaction's `BEGIN` in front, in one round trip where
    psycopg's cursor takes two (its own `BEGIN`, then the statement), and no statement
    building by Django: together about 120 µs of the 600 that a claim and its commit
    took, a third of the process's CPU for them (docs/performance.md)."""
    result = execute_in_one_round_trip(_claim_statement("{}"), values)
    return result.ntuples == 1


@cache
def _claim_statement(placeholder: str) -> str:
    """The claim with `placeholder` for each of its five values (the cursor's `%s`, or
    `{}` for execute_in_one_round_trip)."""
    quote = connection.ops.quote_name
    table, key_column = quote(TaskEffect._meta.db_table), quote("key")
    values = ", ".join([placeholder] * 5)
    return (f"INSERT INTO {table} ({key_column}, task_name, task_id, created_at, expires_at) "  # noqa: S608
            f"VALUES ({values}) ON CONFLICT ({key_column}) DO NOTHING RETURNING id")


def effect_connection_unchecked() -> bool:
    """Skip Django's health check of the kept connection for the claim about to run on it;
    False when there is none to skip (no connection yet, or already checked).

    The caller must replace the connection and claim again, checked, if the claim fails
    with a database error: a dead connection found by the claim is what the health check
    would have found, and nothing has run on it yet.
    """
    # Django's (4.1+) state behind CONN_HEALTH_CHECKS, which its stubs do not declare;
    # test_effects.py holds the names.
    if connection.connection is None:
        return False
    if not connection.health_check_enabled:  # type: ignore[attr-defined]
        return False
    if connection.health_check_done:  # type: ignore[attr-defined]
        return False
    connection.health_check_done = True  # type: ignore[attr-defined]
    return True


def effects_purge_expired(*, now: datetime) -> int:
    """Delete keys past their expiry; return how many."""
    deleted, _ = TaskEffect.objects.filter(expires_at__lt=now).delete()
    return deleted


@cache
def _signature(run: Any) -> inspect.Signature:
    return inspect.signature(run)
