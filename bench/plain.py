"""The baseline: a Django project's plain Celery app, as Celery's docs set it up.

Default settings plus the two every safe deployment adds (late acks, prefetch 1). Django is
loaded (by the `bench` package) as in any Django project's worker, so memory and start-up
compare like with like. Queue: Celery's default, `celery`.

    celery -A bench.plain worker
"""

import time

from celery import Celery
from django.core.mail import send_mail

from bench.probes import BROKER_URL, record_done, record_start

app = Celery("plain", broker=BROKER_URL, set_as_current=False)
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)


@app.task(name="plain.noop")
def noop() -> None:
    """Nothing: what is left to time is the queue and the worker."""


@app.task(name="plain.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)


@app.task(name="plain.probe")
def probe(sent_at: float) -> None:
    record_start(sent_at)


@app.task(name="plain.send_email")
def send_email(to: str) -> None:
    """What teams move off: one task per recipient, nothing recorded but the count."""
    send_mail("News", "What is new", None, [to])
    record_done()
