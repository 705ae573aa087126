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
