"""Benchmarks of the template against plain Celery (`make bench`, docs/performance.md).

Run each as a module (`python -m bench.throughput`): importing this package first sets the
environment the bench process and the workers it starts share, then starts Django.
"""

import os
from pathlib import Path

import django
from django.conf import settings

from bench.probes import BROKER_URL

ROOT = Path(__file__).resolve().parent.parent

# Only in a process whose settings are not read yet, the bench's own (its workers inherit
# the environment). A worker of anything else that imports `bench.tasks` keeps its own:
# Celery reads CELERY_BROKER_URL from the environment, and it moved to the bench's broker.
if not settings.configured:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "test",
        "ENV_FILE": "",  # a developer's .env must not change what is measured
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL",
                                       "postgres://postgres@127.0.0.1:5432/bench"),
        "CELERY_BROKER_URL": BROKER_URL,
        "EMAIL_URL": "memorymail://",
        "LOG_LEVEL": "INFO",  # as deployed: a line per task received and per task done
        "SENTRY_DSN": "",
        "PYTHONPATH": str(ROOT),
        "TASK_MODULES": "bench.tasks",  # what `manage.py dlq` replays by name
    })
django.setup()
