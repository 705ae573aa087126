"""The worker-side request class used by every project task."""

from contextlib import contextmanager

from celery.worker.request import Request


class PlatformRequest(Request):
    """Exposes the task's request while failures are handled in the worker's main process.

    Celery fires `task_failure` for hard time limits and rejected messages from the main
    process without pushing the request, so the dead-letter hook would not know the queue,
    the attempt number or the worker. Pushing it gives every failure path the same context.
    """

    @contextmanager
    def _pushed(self):
        self.task.request_stack.push(self._context)
        try:
            yield
        finally:
            self.task.request_stack.pop()

    def on_timeout(self, soft, timeout):
        with self._pushed():
            super().on_timeout(soft, timeout)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        with self._pushed():
            super().on_failure(exc_info, send_failed_event=send_failed_event,
                               return_ok=return_ok)
