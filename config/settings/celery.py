"""Celery: the broker and what follows from it, serialisation, queues and routing,
acknowledgement, prefetch and limits, connection retries, beat and its schedule.

CELERY_* options are read by config/celery.py through the CELERY_ namespace
(https://docs.celeryq.dev/en/stable/userguide/configuration.html); the others here are
read by Celery's Django fix-up (CELERY_DB_REUSE_MAX) or by the platform.
"""

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from config.settings.django import TIME_ZONE
from config.settings.environment import env, url_setting
from config.settings.workers import (
    BEAT_LOCK_TTL,
    BROKER_RESTORE_INTERVAL,
    BROKER_VISIBILITY_TIMEOUT,
    DEAD_LETTER_SPOOL_DRAIN_INTERVAL,
    OUTBOX_SWEEP_INTERVAL,
    TASK_MAX_DELIVERIES,
    TASK_SOFT_TIME_LIMIT,
    TASK_TIME_LIMIT,
)
from workers.core.redis_urls import is_sentinel_url
from workers.core.routing import CRITICAL, declared_queues

CELERY_BROKER_URL = url_setting("CELERY_BROKER_URL", default="redis://localhost:6379/0")
# amqp://user:password@host:5672/vhost selects RabbitMQ (quorum queues, publisher confirms,
# native delayed delivery; docs/scaling.md). Redis stays the default.
BROKER_IS_RABBITMQ = CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))
# A Redis with automatic failover: sentinel://host:26379;sentinel://host2:26379 URLs (the
# broker's, REDIS_URL, or both) name the Sentinels, which tell clients the group's current
# primary; REDIS_SENTINEL_MASTER is the group's name (docs/scaling.md).
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="")
REDIS_SENTINEL_PASSWORD = env.str("REDIS_SENTINEL_PASSWORD", default="")
BROKER_IS_SENTINEL = is_sentinel_url(CELERY_BROKER_URL)
# The Redis that holds the platform's locks, dedup keys, rate limits, counters, metrics,
# the dead-letter spool and probe results: the broker's own when the broker is Redis.
REDIS_URL = url_setting("REDIS_URL", one_server=True, default=(
    "redis://localhost:6379/0" if BROKER_IS_RABBITMQ else CELERY_BROKER_URL))
# On Redis, kombu's transport with a fetch that pops and records the message as
# unacknowledged in one step (workers/runtime/redis_transport.py; needs Redis 6.2 or later).
# BROKER_TRANSPORT=redis selects kombu's stock transport instead (bench/ compares them).
CELERY_BROKER_TRANSPORT = env.str("BROKER_TRANSPORT", default="") or (
    "workers.runtime.redis_transport:SentinelTransport" if BROKER_IS_SENTINEL else
    "workers.runtime.redis_transport:Transport"
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else None)
if REDIS_SENTINEL_MASTER == "" and (BROKER_IS_SENTINEL or is_sentinel_url(REDIS_URL)):
    raise ImproperlyConfigured("a sentinel:// URL needs REDIS_SENTINEL_MASTER, the name the "
                               "Sentinels monitor the Redis group by")
# What kombu, Celery's result backend and Flower pass to redis-py's Sentinel client.
_SENTINEL_OPTIONS = {"master_name": REDIS_SENTINEL_MASTER, **(
    {"sentinel_kwargs": {"password": REDIS_SENTINEL_PASSWORD}}
    if REDIS_SENTINEL_PASSWORD else {})}
# Results only for tasks that ask for them (probes); Redis expires them by itself.
CELERY_RESULT_BACKEND = url_setting("CELERY_RESULT_BACKEND", default=REDIS_URL,
                                    one_server=True)
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
# Task modules outside the installed apps' tasks.py, imported by every process that looks
# a task up by name (workers, `manage.py dlq`, the admin): a replay or an edit of one of
# their tasks needs it (bench/ sets bench.tasks).
CELERY_IMPORTS = env.list("TASK_MODULES", default=[])
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
    # The lock one worker takes for a restore pass, held for milliseconds. A Redis crash
    # during a pass brings the lock back from the AOF with its expiry, and no worker
    # restores anything until it lapses: kombu's 300 s would hold redelivery up that long.
    "unacked_mutex_expire": 30,
    "socket_keepalive": True,  # notice half-open TCP connections (NAT, load balancers)
    "health_check_interval": 25,  # ping idle connections before reuse
    "socket_connect_timeout": 5,
    "retry_on_timeout": True,
    **(_SENTINEL_OPTIONS if BROKER_IS_SENTINEL else {}),
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    **(_SENTINEL_OPTIONS if is_sentinel_url(CELERY_RESULT_BACKEND) else {})}
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
# RabbitMQ: seconds between AMQP heartbeats (the lower of this and the server's wins). A
# worker cut off from the broker by the network is noticed by both ends after about two
# missed heartbeats; RabbitMQ then hands its unacknowledged messages to other workers
# (tests/faults/test_partitions.py, docs/scaling.md). Celery's default is 120.
CELERY_BROKER_HEARTBEAT = env.int("BROKER_HEARTBEAT", default=30)
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
