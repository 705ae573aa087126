"""Django middleware: every request gets a correlation id, echoed as `X-Request-ID`.

A load balancer's or client's `X-Request-ID` is kept when it looks like an id (else a new
one is made); every job the request enqueues, and every job those enqueue, carries it
(workers.core.correlation), and so does each log line written meanwhile.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from workers.core.correlation import bind_correlation_id, unbind_correlation_id

HEADER = "X-Request-ID"


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        bound = bind_correlation_id(request.headers.get(HEADER))
        try:
            response = self.get_response(request)
        finally:
            unbind_correlation_id()
        response[HEADER] = bound
        return response
