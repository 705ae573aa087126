"""Test settings: the project's settings pointed at the local PostgreSQL and a Redis db of
their own. Anything already in the environment (CI, `make test`) wins."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("ENV_FILE", "")  # a developer's .env must not leak into tests
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("TASK_RETRY_BACKOFF", "1")  # retries within seconds, still jittered
os.environ.setdefault("NOTIFICATIONS_RATE_PER_SECOND", "20")
os.environ.setdefault("BILLING_WEBHOOK_SECRET", "whsec_test_secret")
os.environ.setdefault("ANALYTICS_INGEST_TOKEN", "test-ingest-token")
# The test workers run no periodic alert checks unless a test starts one that does.
os.environ.setdefault("ALERTS_CHECK_INTERVAL", "0")
os.environ.setdefault("METRICS_TOKEN", "test-metrics-token")
# One export directory for this run, shared by the test process and its workers.
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="media-"))

from config.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.ledger"]  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# Where tests/production.py collects the static files its gunicorn serves (the project's
# settings fix STATIC_ROOT beside the code, where the image's collectstatic writes it).
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or STATIC_ROOT)  # noqa: F405
# The misbehaving test tasks are part of the codebase under test: every process (a
# `manage.py dlq requeue` subprocess included) finds them as it finds the apps' tasks.
CELERY_IMPORTS = ["tests.tasks"]
