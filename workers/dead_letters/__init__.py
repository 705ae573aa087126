"""Dead letters: jobs that could not succeed, kept with everything needed to replay them.

Belongs here: the model, the services that record, requeue, discard and purge, the
selectors, the admin pages, and the Redis spool used
while the database is down. Must not: Celery internals (the signal handlers that call
these services live in `workers.runtime`) or business rules of any app.
"""
