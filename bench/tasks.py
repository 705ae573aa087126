"""The template's side of each benchmark: tasks on the project's base task and settings.

Loaded by the bench workers with `-I bench.tasks`. Each declares its queue, as every
project task does.
"""

import time

from celery import shared_task

from bench.probes import record_start
from workers.core.routing import BULK, CRITICAL
from workers.core.standard_tasks import task


@shared_task(route=BULK)
def noop() -> None:
    """Nothing: what is left to time is the queue, the worker and the template's hooks."""


@shared_task(route=BULK, effect_once=True)
def noop_effect_once() -> None:
    """Nothing, inside the transaction that records the task's effect key."""


@shared_task(route=BULK)
def sleep(seconds: float) -> None:
    time.sleep(seconds)


@shared_task(route=CRITICAL, idempotent=True)
def probe(sent_at: float) -> None:
    """Sent through the outbox; a repeated delivery would only add a sample."""
    record_start(sent_at)


@task(queue_name=BULK)
def standard_noop() -> None:
    """Nothing, written with Django's standard task API (`@task`)."""
