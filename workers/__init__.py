"""The job platform, one subpackage per concern (see docs/architecture.md):

- `workers.core`: what task authors import: the base task, error classes, queues and
  routing, the outbox, effect-once keys, enqueue dedup, rate limits, redaction, queue
  statistics, the task registry.
- `workers.dead_letters`: failed jobs kept for triage: models, rules, services,
  selectors, redrives, admin, and the spool that keeps them through a database outage.
- `workers.runtime`: what plugs into Celery's internals, installed from config/celery.py.
- `workers.ops`: health, Prometheus, alerts, Sentry, Flower, the outbox's admin page.

Each concern keeps its tasks in its own `tasks.py`. Top-level modules are what Django
looks for by name: `models` (the registry), `admin` and `management/commands`. Nothing
here imports `apps/`; the apps build on this package.
"""
