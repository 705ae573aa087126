"""The job platform, one subpackage per concern (see docs/architecture.md):

- `workers.core`: what task authors import: the base task, error classes, queues and
  routing, the outbox, effect-once keys, enqueue dedup, rate limits.
- `workers.dead_letters`: failed jobs kept for triage: model, services, selectors,
  admin, redaction, and the spool that keeps them through a database outage.
- `workers.runtime`: what plugs into Celery's internals, installed from config/celery.py.
- `workers.ops`: health, queue statistics, Sentry, the outbox's admin page.

Top-level modules are what Django and Celery look for by name: `models` (the registry),
`admin`, `tasks` (the platform's housekeeping tasks) and `management/commands`.
Nothing here imports `apps/`; the apps build on this package.
"""
