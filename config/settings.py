"""Django settings: every knob comes from the environment (see `.env.example`).

Grouped by concern: Django, the platform (workers/), Celery, the apps, observability.
Nothing here but reading the environment: no platform module is imported for its side
effects (Sentry starts in the workers app's `ready()`).

Defaults are the safe ones: DEBUG off, secure cookies and HSTS on, SECRET_KEY required
unless DJANGO_ENV is `dev` or `test`; production refuses DEBUG, a weak SECRET_KEY and the
development secrets of `.env.example` (config/secret_checks.py). A local run with nothing
set uses SQLite and the Redis on localhost so a fresh clone works before anyone writes a
`.env`.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from config.secret_checks import (
    DEV_VALUES,
    LOCAL_SECRET_KEY,
    refuse_dev_values,
    refuse_weak_secret_key,
)
from workers.core.routing import BULK, CRITICAL, declared_queues

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))  # empty: read no file
if ENV_FILE:
    environ.Env.read_env(ENV_FILE, overwrite=False)  # the real environment wins

DJANGO_ENV = env.str("DJANGO_ENV", default="production")
if DJANGO_ENV not in {"dev", "test", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be dev, test or production, not {DJANGO_ENV!r}")
LOCAL = DJANGO_ENV in {"dev", "test"}

DEBUG = env.bool("DEBUG", default=False)
if LOCAL:
    SECRET_KEY = env.str("SECRET_KEY", default=LOCAL_SECRET_KEY)
else:
    SECRET_KEY = env.str("SECRET_KEY")
    # A dev checkout's .env (or one copied from it) must not reach production unnoticed.
    if DEBUG:
        raise ImproperlyConfigured("DEBUG is true: it is never allowed with DJANGO_ENV=production")
    refuse_dev_values({name: env.str(name, default="") for name in DEV_VALUES})
    refuse_weak_secret_key(SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"] if LOCAL else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Django ----------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "axes",
    "workers",
    "apps.notifications",
    "apps.billing",
    "apps.analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "workers.ops.request_id.RequestIdMiddleware",
    "workers.ops.request_guards.RejectNulCharacters",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into its 429 page
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The zero-setup default is SQLite, written at once by web, both worker pools and beat:
# WAL and IMMEDIATE transactions make writers queue for up to 20 s instead of failing.
DATABASE_URL = env.str("DATABASE_URL", default="") or (
    f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    "?timeout=20&transaction_mode=IMMEDIATE&init_command=PRAGMA%20journal_mode%3DWAL")
DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Logins are throttled by django-axes: its backend refuses a locked-out login before the
# password is checked. Failures are rows in the database, so every gunicorn worker and pod
# counts the same ones. A username is locked from the address that failed LOGIN_FAILURE_LIMIT
# times for LOGIN_LOCKOUT_MINUTES (each further try restarts the wait), and a success
# forgets the failures. Locking by username and address together, not by either alone,
# keeps an attacker from locking every operator out; behind a proxy every client has the
# proxy's address and the lock becomes one per username (docs/scaling.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner in every process; lockouts are still logged
# The login form's field, stated: axes' default is a lazy object posing as a string, which
# the worker's configuration report (workers/runtime/config_censor.py) fails on.
AXES_USERNAME_FORM_FIELD = "username"
# A staff session (it can replay and read failed jobs) lasts this many seconds from login,
# not Django's two weeks (SESSION_COOKIE_AGE, kept for other users): workers/ops/staff_sessions.py.
STAFF_SESSION_AGE = env.int("STAFF_SESSION_AGE", default=8 * 3600)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = env.str("MEDIA_ROOT", default="") or BASE_DIR / "media"  # exports, shared with workers
MEDIA_URL = "media/"  # never served publicly: exports are downloaded through their view
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not LOCAL
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# One URL for the email backend and its server (smtp://user:password@host:587/?tls=True).
_email = env.email_url("EMAIL_URL", default="memorymail://" if DJANGO_ENV == "test"
                       else "consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH", "")  # filemail://
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="no-reply@example.com")

# Security: on outside dev/test, so production passes `manage.py check --deploy` untouched.
# X-Forwarded-Proto is believed only when a proxy in front sets it and drops the client's
# (TRUSTED_PROXY_SSL_HEADER=true): otherwise any client could claim HTTPS.
if env.bool("TRUSTED_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not LOCAL)
# Probed and scraped over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if LOCAL else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not LOCAL)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not LOCAL)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not LOCAL)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not LOCAL)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Platform (workers/) ---------------------------------------------------------------
# Task policy the base task applies to every task that does not state its own.
TASK_SOFT_TIME_LIMIT = env.int("TASK_SOFT_TIME_LIMIT", default=60)
TASK_TIME_LIMIT = env.int("TASK_TIME_LIMIT", default=90)
TASK_MAX_RETRIES = env.int("TASK_MAX_RETRIES", default=5)
TASK_RETRY_BACKOFF = env.int("TASK_RETRY_BACKOFF", default=2)
TASK_RETRY_BACKOFF_MAX = env.int("TASK_RETRY_BACKOFF_MAX", default=600)
TASK_MAX_COUNTDOWN = env.int("TASK_MAX_COUNTDOWN", default=1800)
TASK_MAX_DELIVERIES = env.int("TASK_MAX_DELIVERIES", default=3)
# Effect-once keys are kept this long: longer than any redelivery or dead-letter replay.
TASK_EFFECT_TTL_DAYS = env.int("TASK_EFFECT_TTL_DAYS", default=30)
# Default lifetime of an enqueue-time dedup key (a job sent with `dedup_key=`), seconds.
TASK_DEDUP_TTL = env.int("TASK_DEDUP_TTL", default=3600)
# Outbox: rows per publish batch; how often beat sweeps, and how old a row must be
# before the sweeper takes it from the after-commit publisher (seconds); how long
# published rows are kept for inspection (hours).
OUTBOX_BATCH = env.int("OUTBOX_BATCH", default=500)
OUTBOX_SWEEP_INTERVAL = env.int("OUTBOX_SWEEP_INTERVAL", default=10)
OUTBOX_SWEEP_GRACE = env.int("OUTBOX_SWEEP_GRACE", default=5)
OUTBOX_RETENTION_HOURS = env.int("OUTBOX_RETENTION_HOURS", default=72)
# Dead-letter retention (workers/dead_letters/retention.py), purged in batches by beat:
# days kept per status (0: for ever; open = new, acknowledged, snoozed) and a row cap that
# removes the oldest closed rows first and never an open one.
DEAD_LETTER_KEEP_RESOLVED_DAYS = env.int("DEAD_LETTER_KEEP_RESOLVED_DAYS", default=30)
DEAD_LETTER_KEEP_DISCARDED_DAYS = env.int("DEAD_LETTER_KEEP_DISCARDED_DAYS", default=90)
DEAD_LETTER_KEEP_OPEN_DAYS = env.int("DEAD_LETTER_KEEP_OPEN_DAYS", default=0)
DEAD_LETTER_MAX_ROWS = env.int("DEAD_LETTER_MAX_ROWS", default=1_000_000)
DEAD_LETTER_PURGE_BATCH = env.int("DEAD_LETTER_PURGE_BATCH", default=1000)
# How often beat moves dead letters kept in Redis during a database outage into the table.
DEAD_LETTER_SPOOL_DRAIN_INTERVAL = env.int("DEAD_LETTER_SPOOL_DRAIN_INTERVAL", default=10)

# A message unacked for this long is handed to another worker. It must exceed the longest
# hard limit, countdown and retry backoff, or a slow task runs twice (tests enforce it).
BROKER_VISIBILITY_TIMEOUT = env.int("BROKER_VISIBILITY_TIMEOUT", default=3600)
# How often each worker looks for messages whose visibility timeout has passed, seconds.
BROKER_RESTORE_INTERVAL = env.int("BROKER_RESTORE_INTERVAL", default=60)
# RabbitMQ's `consumer_timeout` (rabbitmq.conf, milliseconds there), in seconds: a delivery
# unacked for longer closes the worker's channel and goes back to the queue. It must exceed
# the longest hard limit (tests enforce it, and that docker/rabbitmq/rabbitmq.conf, which
# sets it on the broker, agrees).
BROKER_CONSUMER_TIMEOUT = env.int("BROKER_CONSUMER_TIMEOUT", default=3600)
# Seconds the beat lock lives without renewal: a standby beat takes over within this.
BEAT_LOCK_TTL = env.int("BEAT_LOCK_TTL", default=30)
# Liveness files (empty: off): a worker rewrites its file every WORKER_HEARTBEAT_INTERVAL
# seconds while connected to the broker, beat on every tick; probes run
# `python -m workers.ops.liveness FILE --max-age N` (workers/runtime/heartbeat.py).
WORKER_HEARTBEAT_FILE = env.str("WORKER_HEARTBEAT_FILE", default="")
WORKER_HEARTBEAT_INTERVAL = env.float("WORKER_HEARTBEAT_INTERVAL", default=10.0)
BEAT_HEARTBEAT_FILE = env.str("BEAT_HEARTBEAT_FILE", default="")
# Workers publish task events in batches at most this many seconds apart (see
# workers/runtime/event_batches.py for how many one batch may hold).
WORKER_EVENTS_FLUSH_INTERVAL = env.float("WORKER_EVENTS_FLUSH_INTERVAL", default=0.1)

# --- Celery ---------------------------------------------------------------------------
# CELERY_* options are read by config/celery.py through the CELERY_ namespace (see
# https://docs.celeryq.dev/en/stable/userguide/configuration.html); the others in this
# section are read by Celery's Django fix-up (CELERY_DB_REUSE_MAX) or by the platform.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://localhost:6379/0")
# amqp://user:password@host:5672/vhost selects RabbitMQ (quorum queues, publisher confirms,
# native delayed delivery; docs/scaling.md). Redis stays the default.
BROKER_IS_RABBITMQ = CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))
# The Redis that holds the platform's locks, dedup keys, rate limits, counters, metrics,
# the dead-letter spool and probe results: the broker's own when the broker is Redis.
REDIS_URL = env.str("REDIS_URL", default="") or (
    "redis://localhost:6379/0" if BROKER_IS_RABBITMQ else CELERY_BROKER_URL)
# On Redis, kombu's transport with a fetch that pops and records the message as
# unacknowledged in one step (workers/runtime/redis_transport.py; needs Redis 6.2 or later).
# BROKER_TRANSPORT=redis selects kombu's stock transport instead (bench/ compares them).
CELERY_BROKER_TRANSPORT = env.str("BROKER_TRANSPORT", default="") or (
    "workers.runtime.redis_transport:Transport"
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else None)
# Results only for tasks that ask for them (probes); Redis expires them by itself.
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or REDIS_URL
CELERY_TASK_IGNORE_RESULT = True  # most jobs have effects, not return values
CELERY_RESULT_EXPIRES = 3600  # a probe result is read within seconds
# JSON only: pickle would let anyone who can write to Redis run code in the workers.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_EVENT_SERIALIZER = "json"
# Two declared queues and nothing else: a typo in a route fails loudly instead of
# creating a queue that no worker consumes.
# On RabbitMQ, quorum queues whose delivery limit is TASK_MAX_DELIVERIES (workers.core.routing).
CELERY_TASK_QUEUES = declared_queues(rabbitmq=BROKER_IS_RABBITMQ,
                                     delivery_limit=TASK_MAX_DELIVERIES)
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_DEFAULT_QUEUE = CRITICAL  # only Celery's own control messages rely on it
CELERY_TASK_ROUTES = ("workers.core.routing.route_task",)
# Ack after the task ran, so a crash mid-task re-runs it instead of losing it.
CELERY_TASK_ACKS_LATE = True
# A dead child process puts its message back; workers.core.base caps how often.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Failures and hard time limits are acked once the dead-letter row holds the payload.
CELERY_TASK_ACKS_ON_FAILURE = True
CELERY_TASK_ACKS_ON_TIMEOUT = True
# One message per process, and none reserved while every process is busy, so a long
# task never holds a queued one hostage and a shutdown returns nothing in limbo.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_DISABLE_PREFETCH = not BROKER_IS_RABBITMQ  # Redis only (Celery warns elsewhere)
# Every task gets a soft limit (catchable, for clean-up) and a hard one (the child is killed).
CELERY_TASK_SOFT_TIME_LIMIT = TASK_SOFT_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = TASK_TIME_LIMIT
# Wait for Redis at start-up instead of crashing the container into a restart loop.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # keep trying while Redis restarts
# On RabbitMQ the broker confirms every publish (kombu waits for it), so a job the
# outbox marks published is on the queue; the Redis options below mean nothing there.
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True} if BROKER_IS_RABBITMQ else {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    # kombu scans every interval * throttle seconds; throttle 1 makes the interval exact.
    "unacked_restore_interval": BROKER_RESTORE_INTERVAL,
    "unacked_restore_throttle": 1,
    "socket_keepalive": True,  # notice half-open TCP connections (NAT, load balancers)
    "health_check_interval": 25,  # ping idle connections before reuse
    "socket_connect_timeout": 5,
    "retry_on_timeout": True,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
CELERY_REDIS_SOCKET_KEEPALIVE = True
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 25
# A publish during a Redis blip is retried instead of raising into the request.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 5,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}
# When the connection to Redis drops, running tasks finish instead of being cancelled.
# Cancelling terminates the child and Celery may then ack the message once Redis is back,
# losing the job (tests/faults restart Redis to hold this). Finished tasks that cannot ack
# are redelivered after the visibility timeout, and effect-once tasks skip the repeat.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Recycle children to bound leaks in third-party code (per task count and resident KiB).
# The memory cap is what catches a leak; the count is a backstop, since each replacement
# is a fork of the main process (docs/performance.md).
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.int("WORKER_MAX_TASKS_PER_CHILD", default=10000)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int("WORKER_MAX_MEMORY_PER_CHILD", default=262144)
# Retries wait in the worker's memory until due; bound how many one worker holds.
CELERY_WORKER_ETA_TASK_LIMIT = env.int("WORKER_ETA_TASK_LIMIT", default=1000)
# Celery's Django fix-up closes every database connection before and after each task, so
# each task would open a new PostgreSQL connection (docs/performance.md). With this set
# it closes them only every this many tasks, and workers/runtime/signal_handlers.py
# recycles connections per task as Django does per request (CONN_MAX_AGE, CONN_HEALTH_CHECKS).
CELERY_DB_REUSE_MAX = 1000
# Task events feed Flower's task views and its Prometheus metrics.
CELERY_WORKER_SEND_TASK_EVENTS = True
# A "sent" event per enqueue shows jobs no worker has picked up yet, but it is a second
# Redis publish on every enqueue (docs/performance.md). Waiting work is counted by
# `manage.py queues stats` and Flower's Broker page without it.
CELERY_TASK_SEND_SENT_EVENT = env.bool("TASK_SEND_SENT_EVENT", default=False)
# Django's LOGGING config stays in charge of the worker's logs.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Messages that cannot become a task (undecodable, unknown task, malformed) are
# dead-lettered with their raw body instead of being logged and dropped.
CELERY_WORKER_CONSUMER = "workers.runtime.consumer:DeadLetteringConsumer"
# SIGTERM (warm shutdown) stops consuming and waits for running tasks; unstarted messages
# go back to Redis. Compose's stop_grace_period per pool exceeds its longest hard limit.
CELERY_TIMEZONE = TIME_ZONE
# Beat schedules from the database, and only the holder of a Redis lock sends anything:
# a second beat waits as a standby and takes over within BEAT_LOCK_TTL of the first dying.
CELERY_BEAT_SCHEDULER = "workers.runtime.beat:LockedDatabaseScheduler"
# Renew the lock at least three times per TTL (beat wakes at least this often).
CELERY_BEAT_MAX_LOOP_INTERVAL = max(1, min(5, BEAT_LOCK_TTL // 3))
# Write each entry's last run time to the database as soon as it is sent, so a standby
# taking over knows what already ran.
CELERY_BEAT_SYNC_EVERY = 1
# Synced into the database by `manage.py sync_schedules` (and by beat at start-up).
CELERY_BEAT_SCHEDULE = {
    "notifications-daily-digest": {
        "task": "apps.notifications.tasks.send_daily_digest",
        "schedule": crontab(minute="0", hour="7"),
    },
    "billing-generate-invoices": {
        "task": "apps.billing.tasks.generate_due_invoices",
        "schedule": crontab(minute="0", hour="6"),
    },
    "billing-dunning": {
        "task": "apps.billing.tasks.run_dunning",
        "schedule": crontab(minute="15"),
    },
    "analytics-hourly-rollup": {
        "task": "apps.analytics.tasks.rollup_last_hour",
        "schedule": crontab(minute="5"),
    },
    "analytics-retention-cleanup": {
        "task": "apps.analytics.tasks.delete_expired_events",
        "schedule": crontab(minute="30", hour="3"),
    },
    "workers-outbox-sweep": {
        "task": "workers.tasks.sweep_outbox",
        "schedule": float(OUTBOX_SWEEP_INTERVAL),
        # A sweep that waited longer than its interval is superseded by the next one.
        "options": {"expires": float(OUTBOX_SWEEP_INTERVAL)},
    },
    "workers-dead-letter-spool-drain": {
        "task": "workers.tasks.drain_dead_letter_spool",
        "schedule": float(DEAD_LETTER_SPOOL_DRAIN_INTERVAL),
        "options": {"expires": float(DEAD_LETTER_SPOOL_DRAIN_INTERVAL)},
    },
    "workers-dead-letter-housekeeping": {
        "task": "workers.tasks.housekeep_dead_letters",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "workers-purge-expired-records": {
        "task": "workers.tasks.purge_expired_records",
        "schedule": crontab(minute="45"),
    },
}

# --- Apps ---------------------------------------------------------------------------
# Users per bulk task when a campaign fans out (100,000 users -> 200 tasks at 500).
NOTIFICATIONS_CHUNK_SIZE = env.int("NOTIFICATIONS_CHUNK_SIZE", default=500)
# The email provider's limit, shared by every bulk worker (messages per second).
NOTIFICATIONS_RATE_PER_SECOND = env.int("NOTIFICATIONS_RATE_PER_SECOND", default=100)
# Messages sent and committed together within a chunk (a crash re-sends at most these).
NOTIFICATIONS_SEND_BATCH = env.int("NOTIFICATIONS_SEND_BATCH", default=50)

# Stripe's webhook signing secret (whsec_…); without it the webhook answers 503.
BILLING_WEBHOOK_SECRET = env.str("BILLING_WEBHOOK_SECRET", default="")
BILLING_WEBHOOK_TOLERANCE = env.int("BILLING_WEBHOOK_TOLERANCE", default=300)
# For subscriptions the app bills itself (no Stripe subscription): days after a failed
# charge at which the app's dunning retries it; then the subscription is past due.
# Stripe's own subscriptions are retried by Stripe (Smart Retries), not by this schedule.
BILLING_DUNNING_SCHEDULE_DAYS = env.list("BILLING_DUNNING_SCHEDULE_DAYS", cast=int,
                                         default=[1, 3, 7])
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# The API version the webhook accepts and the client sends; the webhook endpoint in Stripe
# must be set to it. The default is the installed stripe library's (a test holds them equal).
STRIPE_API_VERSION = env.str("STRIPE_API_VERSION", default="2026-10-28.endive")

# Bearer token clients send to POST /api/events/; without it ingestion answers 503.
ANALYTICS_INGEST_TOKEN = env.str("ANALYTICS_INGEST_TOKEN", default="")
ANALYTICS_MAX_BATCH = env.int("ANALYTICS_MAX_BATCH", default=500)
ANALYTICS_MAX_PROPERTIES_BYTES = env.int("ANALYTICS_MAX_PROPERTIES_BYTES", default=4096)
ANALYTICS_MAX_BODY_BYTES = env.int("ANALYTICS_MAX_BODY_BYTES", default=1_048_576)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, ANALYTICS_MAX_BODY_BYTES)
# Raw events older than this are deleted nightly, this many rows per statement.
ANALYTICS_RETENTION_DAYS = env.int("ANALYTICS_RETENTION_DAYS", default=90)
ANALYTICS_CLEANUP_BATCH = env.int("ANALYTICS_CLEANUP_BATCH", default=5000)

# --- Observability -----------------------------------------------------------------------
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
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Sentry: reports from web, workers and beat once a DSN is set (started by the workers
# app when Django loads, workers/ops/sentry.py).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="") or DJANGO_ENV
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)

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
