"""The task-author API: the only part of the platform that apps import.

Belongs here: the base task and its policy (retries, time limits, redelivery cap), error
classes, queue names and the router, the outbox, effect-once keys, enqueue dedup, rate
limits, and the broker's Redis client they share. Must not: anything that reaches into
Celery's worker internals (`workers.runtime`), dead-letter triage, or ops tooling.
"""
