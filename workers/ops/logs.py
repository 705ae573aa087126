"""Log records that say which task and which request they belong to.

`TaskContextFilter` (on the console handler of every process) adds `task_id`,
`task_name`, `queue`, `attempt` and `correlation_id` to each record: filled in while a task
runs in a worker, blank elsewhere except the correlation id of a web request. With
`LOG_FORMAT=json` each record is one JSON object per line with those fields
(python-json-logger); the plain format stays the local default.
"""

import logging

from celery import current_app

from workers.api.correlation import correlation_id
from workers.api.routing import queue_of_routing_key


class TaskContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.task_id = record.task_name = record.queue = record.attempt = ""
        record.correlation_id = correlation_id()
        task = current_app.current_task
        if task is not None and task.request.id:
            request = task.request
            record.task_id = request.id
            record.task_name = task.name
            record.queue = queue_of_routing_key((request.delivery_info or {}).get("routing_key"))
            record.attempt = (request.retries or 0) + 1
        return True
