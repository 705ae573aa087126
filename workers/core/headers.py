"""Names of the message headers the platform adds, in one place.

Celery copies custom headers into the task's request, so each is read back with
`task.request.get(NAME)` in the worker.
"""

#: Publish time (`time.time()`), stamped on every message: queue age, beat's send time.
ENQUEUED_AT_HEADER = "enqueued_at"
#: The enqueue-time dedup key the job holds until it ends.
DEDUP_HEADER = "dedup_key"
#: The id of the dead letter a replay came from.
REPLAY_HEADER = "replay_of"
#: The correlation id of the request or task that enqueued the job (workers.core.correlation).
#: Not "correlation_id": Celery's own request context uses that name for the task id.
CORRELATION_HEADER = "x_correlation_id"

#: Headers Celery writes itself from what an outbox row holds, or that the platform counts
#: on: a row's header of one of these names would replace it, and the worker would run
#: another task, under another id or at another time, count attempts never made, or show a
#: call other than the one it runs. The outbox refuses them. (`shadow`, the name logs show,
#: is a row's to set: the standard task API does.)
ROW_OWN_HEADERS = frozenset({"lang", "task", "id", "eta", "retries", "argsrepr", "kwargsrepr"})
