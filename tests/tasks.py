"""Tasks that misbehave on purpose, loaded only into the test workers (`-I tests.tasks`).

They are sent with an explicit `queue=` since the project's route table must not name
them. Side effects go to the test Redis so the test process can count them.
"""

import json
import logging
import os
import signal
import time

import redis
from celery import shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import task_postrun
from django.conf import settings
from django.db import connection

from workers.core.exceptions import PermanentError, TransientError
from workers.core.redis_urls import redis_from_url

logger = logging.getLogger(__name__)

RAN_ON = "test:ran-on"
FINISHED = "test:finished"


def store() -> redis.Redis:
    return redis_from_url(settings.REDIS_URL, decode_responses=True,
                          master_name=settings.REDIS_SENTINEL_MASTER)


@task_postrun.connect
def remember_where_it_ran(sender=None, task_id=None, **_):
    """Every task, project ones included, records the worker and queue that ran it."""
    delivery_info = sender.request.delivery_info or {}
    pipe = store().pipeline()
    pipe.hset(RAN_ON, task_id, f"{sender.request.hostname}|{delivery_info.get('routing_key')}")
    pipe.hincrby(FINISHED, task_id, 1)  # deliveries of the same id, skipped ones included
    pipe.execute()


def count_run(key: str) -> int:
    return store().incr(f"test:runs:{key}")


@shared_task(max_retries=2, retry_backoff=1, retry_backoff_max=2)
def transient_until(key: str, failures: int) -> None:
    if count_run(key) <= failures:
        raise TransientError(f"flaky dependency, run {key}")


@shared_task
def permanent(key: str, card_number: str = "") -> None:
    count_run(key)
    raise PermanentError("invalid input")


@shared_task
def undeclared(key: str) -> None:
    count_run(key)
    raise ValueError("a bug, not a transient condition")


@shared_task(soft_time_limit=1, time_limit=2)
def overrun(key: str) -> None:
    count_run(key)
    try:
        time.sleep(10)
    except SoftTimeLimitExceeded:
        time.sleep(10)  # ignores the soft limit, as a stuck C call would


@shared_task
def kill_own_process(key: str) -> None:
    count_run(key)
    os.kill(os.getpid(), signal.SIGKILL)


@shared_task
def fails_until_fixed(key: str) -> None:
    count_run(key)
    if not store().exists(f"test:fixed:{key}"):
        raise PermanentError("not fixed yet")


@shared_task
def rejects(key: str) -> None:
    count_run(key)
    raise Reject("message refused by the task", requeue=False)


@shared_task(effect_once=True)
def record_effect(key: str, seconds: float = 0.0) -> None:
    """A job whose effect (a ledger row) commits with its effect-once key."""
    from tests.ledger.models import Effect

    time.sleep(seconds)
    Effect.objects.create(key=key)


@shared_task(effect_once=True, effect_key="ledger:{key}")
def record_effect_for(key: str) -> None:
    """A job whose key names its object: a second job for the same key does nothing."""
    from tests.ledger.models import Effect

    Effect.objects.create(key=key)


@shared_task
def relay(key: str) -> None:
    """Log a line and enqueue `log_line`: the correlation id must follow."""
    logger.info("relay %s", key)
    log_line.apply_async(args=[key], queue="critical")


def wait_for_release(key: str) -> None:
    """Hold this worker process until the test sets `test:release:<key>`: an event the
    test controls, so "still running" is a state, not a race (polled: a task body cannot
    be woken otherwise, and the soft time limit ends a test that forgot to release)."""
    while not store().exists(f"test:release:{key}"):
        time.sleep(0.05)


@shared_task(soft_time_limit=110, time_limit=120)
def held_until_released(key: str) -> None:
    wait_for_release(key)


@shared_task
def log_line(key: str) -> None:
    logger.info("log line %s", key)


BEAT_TICKS = "test:beat-ticks"


@shared_task(bind=True)
def beat_tick(self) -> None:
    """Sent by beat in the single-beat test: each run records when beat published it."""
    store().rpush(BEAT_TICKS, self.request.get("enqueued_at"))


@shared_task
def database_backend(key: str) -> None:
    """Record which PostgreSQL backend (server process) served this task's query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        store().rpush(f"test:backends:{key}", cursor.fetchone()[0])


@shared_task
def declines(order: int) -> None:
    """Fails for good with a message that differs per job only by a number: one fingerprint."""
    raise PermanentError(f"card declined for order {order}")


#: Planted by workers/ops/tests/test_sentry.py: each must reach Sentry nowhere.
LOGGED_SECRET = "tb-logged-7d1c2e9a"
EXCEPTION_SECRET = "tb-exception-5b8f0c3d"


@shared_task
def fails_holding_secrets(reference: str, memo: str = "", card_number: str = "") -> None:
    """Fails as careless code would: secrets in its arguments (positional, a keyword under
    a plain name, a keyword under a sensitive one), in a parameter of a log line at ERROR
    and in its exception's message."""
    logger.error("the payment provider refused api key %s", LOGGED_SECRET)
    raise ValueError(f"login failed for {{'password': '{EXCEPTION_SECRET}'}}")


@shared_task
def scrubbed_while_running(event_json: str, *args: object, **kwargs: object) -> dict:
    """The event in `event_json` as Sentry's `before_send` leaves it when the report comes
    from inside a task called with these arguments (run with `.apply()`). JSON so that the
    event's own strings are not arguments of the task."""
    from workers.ops.sentry import scrub_event

    return scrub_event(json.loads(event_json), {})


@shared_task
def login(username: str, password: str, hold: str = "", session: str = "") -> None:
    """Fails as careless code would, its password in its message and so in its traceback
    (the redaction tests plant secrets in both, and in its positional and keyword
    arguments). With `hold`, it first waits until the test sets `test:release:<hold>`."""
    if hold:
        wait_for_release(hold)
    raise PermanentError(f"login failed for {{'username': {username!r}, "
                         f"'password': {password!r}}}")


@shared_task
def refuses_nul(key: str, text: str, note: str = "") -> None:
    """Fails for good with the NUL of its argument in its message (and so its traceback):
    content PostgreSQL refuses in text and jsonb, as a hostile input would bring it."""
    count_run(key)
    raise PermanentError(f"refused {text}")


@shared_task(bind=True, max_retries=1)
def retries_once(self, key: str, countdown: float, api_key: str = "") -> None:
    """Fail the first run with secrets in its error (one shaped like a key, its own
    `api_key` argument quoted bare) and retry after `countdown` s."""
    if count_run(key) == 1:
        raise self.retry(countdown=countdown, exc=TransientError(
            f"gateway refused key sk_live_51HabcdefghijklmnopQRSTUVWX and {api_key}"))


@shared_task
def quotes_its_password(username: str, password: str) -> None:
    """Fails as careless code would, quoting its password bare in its message."""
    raise PermanentError(f"auth refused for {username} using {password}")
