"""Test settings: the project's, with values of their own.

Four are environment defaults instead, set before the project's settings load, because they
decide how those load and every process a test starts must agree on them: no `.env` (a
developer's must not leak into tests), DJANGO_ENV, the database, and the broker (the Celery
settings derive the transport, the queues and the platform's Redis from its URL). What is
already in the environment wins: CI's RabbitMQ pass sets its broker there.

Every other difference is a value below; each still yields to the environment, so a test
can start a process with a setting of its own.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("ENV_FILE", "")
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")

from config.settings import *  # noqa: F403
from config.settings.environment import env

INSTALLED_APPS = [*INSTALLED_APPS, "tests.ledger"]  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# The misbehaving test tasks are part of the codebase under test: every process (a
# `manage.py dlq requeue` subprocess included) finds them as it finds the apps' tasks.
CELERY_IMPORTS = ["tests.tasks"]

TASK_RETRY_BACKOFF = env.int("TASK_RETRY_BACKOFF", default=1)  # retries within seconds
NOTIFICATIONS_RATE_PER_SECOND = env.int("NOTIFICATIONS_RATE_PER_SECOND", default=20)
BILLING_WEBHOOK_SECRET = env.str("BILLING_WEBHOOK_SECRET", default="whsec_test_secret")
ANALYTICS_INGEST_TOKEN = env.str("ANALYTICS_INGEST_TOKEN", default="test-ingest-token")
METRICS_TOKEN = env.str("METRICS_TOKEN", default="test-metrics-token")
# The test workers run no periodic alert checks unless a test starts one that does.
ALERTS_CHECK_INTERVAL = env.float("ALERTS_CHECK_INTERVAL", default=0.0)


def _media_root() -> str:
    """One export directory per run: tests/fixtures.py hands it to every process a test
    starts. Made here, it is removed when this process exits (not by a forked child)."""
    given = env.str("MEDIA_ROOT", default="")
    if given:
        return given
    made, maker = tempfile.mkdtemp(prefix="media-"), os.getpid()

    def remove() -> None:
        if os.getpid() == maker:
            shutil.rmtree(made, ignore_errors=True)

    atexit.register(remove)
    return made


MEDIA_ROOT = _media_root()
# Where tests/production.py collects the static files its gunicorn serves (the project's
# settings fix STATIC_ROOT beside the code, where the image's collectstatic writes it).
STATIC_ROOT = Path(env.str("STATIC_ROOT", default="") or STATIC_ROOT)  # noqa: F405
# Tests that read a row's outbox mark see it once the publish returns: the marker thread
# (workers/core/outbox_marks.py, its own tests) would hold a connection to the test
# database and mark rows a test has just set back to unpublished.
OUTBOX_MARK_INTERVAL = env.float("OUTBOX_MARK_INTERVAL", default=0.0)
