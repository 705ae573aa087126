"""The template's side of each benchmark: tasks on the project's base task and settings.

Loaded by the bench workers with `-I bench.tasks`. Each declares its queue, since these
tasks are not in the project's route table (a queue on the task wins over the router).
"""

import time

from celery import shared_task

from bench.probes import record_start
from workers.routing import BULK, CRITICAL


@shared_task(queue=BULK)
def noop() -> None:
    """Nothing: what is left to time is the queue, the worker and the template's hooks."""


@shared_task(queue=BULK, effect_once=True)
def noop_effect_once() -> None:
    """Nothing, inside the transaction that records the task's effect key."""


@shared_task(queue=BULK)
def sleep(seconds: float) -> None:
    time.sleep(seconds)


@shared_task(queue=CRITICAL)
def probe(sent_at: float) -> None:
    record_start(sent_at)
