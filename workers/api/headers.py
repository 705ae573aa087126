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
