"""The worker-side request class used by every project task."""

from celery.worker.request import Request


class PlatformRequest(Request):
    """Exposes the task's request while a hard time limit is handled.

    Celery handles a hard time limit in the worker's main process and fires
    `task_failure` without pushing the request, so the dead-letter hook would not know the
    attempt number or the queue. Pushing it here gives that path the same context as every
    other failure.
    """

    def on_timeout(self, soft, timeout):
        self.task.request_stack.push(self._context)
        try:
            super().on_timeout(soft, timeout)
        finally:
            self.task.request_stack.pop()
