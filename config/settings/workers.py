"""The job platform's knobs (workers/): task policy, the outbox, dead-letter retention, the
broker's redelivery windows, beat's lock, liveness files and event batching."""

from config.settings.environment import env

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
# Django's standard task API (`@task` from workers.core.standard_tasks) runs on the
# platform's pools (workers/core/task_backend.py); results are kept this long (seconds).
TASKS = {"default": {"BACKEND": "workers.core.task_backend.PlatformTaskBackend",
                     "QUEUES": ["critical", "bulk"]}}
TASK_RESULT_TTL = env.int("TASK_RESULT_TTL", default=7 * 86400)
# Outbox: rows per publish batch; how often beat sweeps, and how old a row must be
# before the sweeper takes it from the after-commit publisher (seconds); how long
# published rows are kept for inspection (hours).
OUTBOX_BATCH = env.int("OUTBOX_BATCH", default=500)
OUTBOX_SWEEP_INTERVAL = env.int("OUTBOX_SWEEP_INTERVAL", default=10)
OUTBOX_SWEEP_GRACE = env.int("OUTBOX_SWEEP_GRACE", default=5)
# How often a process marks the rows it published after their commit, in one UPDATE
# (seconds; 0: each publish marks its own). Well under the grace, or the sweeper would
# send rows again before their marks land (workers/core/outbox_marks.py).
OUTBOX_MARK_INTERVAL = env.float("OUTBOX_MARK_INTERVAL", default=min(0.5, OUTBOX_SWEEP_GRACE / 4))
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
# On a Redis broker with replicas: how many must hold an outbox batch (or a requeue's)
# before its rows are marked published, and how long to wait for them (ms). A failover
# promotes a replica that may lack the primary's last writes; a batch short of replicas
# stays unpublished for the sweeper. 0: marked once the primary has it (docs/scaling.md).
BROKER_MIN_REPLICAS = env.int("BROKER_MIN_REPLICAS", default=0)
BROKER_REPLICA_TIMEOUT_MS = env.int("BROKER_REPLICA_TIMEOUT_MS", default=1000)
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
