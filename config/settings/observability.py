"""What operators see: logs, Sentry, Flower, Prometheus' `/metrics`, and alerts."""

from config.settings.environment import DJANGO_ENV, env
from config.settings.workers import WORKER_HEARTBEAT_INTERVAL
from workers.core.routing import BULK, CRITICAL

# The root logger's level in every process (web, workers, beat, commands).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# `plain` (the local default) or `json`: one object per line, with the task's id, name,
# queue and attempt and the correlation id of the request that started the work.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"task_context": {"()": "workers.ops.logs.TaskContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s "
                   "%(task_id)s %(task_name)s %(queue)s %(attempt)s %(correlation_id)s",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT,
                             "filters": ["task_context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # A standard task's start and success, which the worker's own lines (received,
        # succeeded) already tell, with its id and function; its failures still show.
        "django_tasks": {"level": "WARNING"},
        "django.tasks": {"level": "WARNING"},
    },
}

# Sentry: reports from web, workers and beat once a DSN is set (started by the workers
# app when Django loads, workers/ops/sentry.py).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="") or DJANGO_ENV
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)

# Flower's login (user:password); `manage.py flower` refuses to start without one.
FLOWER_BASIC_AUTH = env.str("FLOWER_BASIC_AUTH", default="")
# The address `manage.py flower` listens on: loopback unless a container needs 0.0.0.0
# (docker-compose.yml and deploy/kubernetes set it for their Flower).
FLOWER_ADDRESS = env.str("FLOWER_ADDRESS", default="127.0.0.1")
# Where operators open Flower and Sentry (https://flower.example.com,
# https://sentry.example.com/organizations/acme/issues/): each dead letter links to its task
# in one and its events in the other. Empty: no link.
FLOWER_PUBLIC_URL = env.str("FLOWER_PUBLIC_URL", default="")
SENTRY_ISSUES_URL = env.str("SENTRY_ISSUES_URL", default="")

# Prometheus: `/metrics` on the web process answers only with `Authorization: Bearer
# <METRICS_TOKEN>`, and is not served at all while the token is unset. Every worker
# process sums its per-task figures in memory and flushes them to Redis this often
# (seconds); a host silent for METRICS_HOST_TTL seconds leaves the scrape
# (workers/runtime/metric_store.py). METRICS_ENABLED=false records nothing (bench/ compares).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
METRICS_FLUSH_INTERVAL = env.float("METRICS_FLUSH_INTERVAL", default=2.0)
METRICS_HOST_TTL = env.int("METRICS_HOST_TTL", default=86400)
# A worker counts as up while its last heartbeat is younger than this (seconds).
METRICS_WORKER_UP_AGE = env.float("METRICS_WORKER_UP_AGE", default=3 * WORKER_HEARTBEAT_INTERVAL)

# Alerts (workers/ops/alerts): a new failure fingerprint, and each threshold below, posts
# to a Slack-compatible incoming webhook and/or emails ALERTS_EMAIL_TO; repeats within
# ALERTS_REPEAT_MINUTES are counted and sent as one digest. Links in alerts start with
# ALERTS_BASE_URL (the admin's public address, https://ops.example.com).
ALERTS_SLACK_WEBHOOK_URL = env.str("ALERTS_SLACK_WEBHOOK_URL", default="")
ALERTS_EMAIL_TO = env.list("ALERTS_EMAIL_TO", default=[])
ALERTS_REPEAT_MINUTES = env.float("ALERTS_REPEAT_MINUTES", default=60.0)
ALERTS_BASE_URL = env.str("ALERTS_BASE_URL", default="http://localhost:8000")
# Thresholds, checked every ALERTS_CHECK_INTERVAL seconds by whichever live beat or worker
# gets there first: the oldest waiting message per queue, the oldest unpublished outbox
# row, and beat's last tick (seconds); a pool with no worker heartbeat always alerts.
ALERTS_CHECK_INTERVAL = env.float("ALERTS_CHECK_INTERVAL", default=60.0)
ALERTS_QUEUE_MAX_AGE = {
    CRITICAL: env.float("ALERTS_CRITICAL_MAX_AGE", default=60.0),
    BULK: env.float("ALERTS_BULK_MAX_AGE", default=1800.0),
}
ALERTS_OUTBOX_MAX_AGE = env.float("ALERTS_OUTBOX_MAX_AGE", default=120.0)
ALERTS_BEAT_MAX_SILENCE = env.float("ALERTS_BEAT_MAX_SILENCE", default=120.0)
# Seconds a webhook post may take; a failed delivery is retried with backoff.
ALERTS_HTTP_TIMEOUT = env.float("ALERTS_HTTP_TIMEOUT", default=5.0)
