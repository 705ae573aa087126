"""The platform's core: what task authors import, and the only part of it apps import.

Belongs here: the base task and its policy (retries, time limits, redelivery cap), error
classes, queue names and the router, the outbox, effect-once keys, enqueue dedup, rate
limits, the platform's Redis client they share (`platform_redis`), whether the broker
answers (`broker_health`), the redaction of payloads shown to people, the signals apps
receive from the platform, and the checks at an input or output boundary (bounded JSON
parsing in `json_input`, spreadsheet-safe CSV cells in `csv_cells`). Must not: anything
that reaches into Celery's worker internals (`workers.runtime`), dead-letter triage, or
ops tooling.
"""
