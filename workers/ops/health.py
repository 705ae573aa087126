"""Is the database up, is the broker up: one answer for `/healthz`, `check_services` and
`queues probe`. (The outbox's publish path has its own quicker Redis ping,
`workers.api.broker.broker_reachable`, since it runs after every commit.)"""

from celery import current_app
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


def database_error() -> Exception | None:
    """None if the default database answers a query, else the error."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return exc
    return None


def broker_error() -> Exception | None:
    """None if one connection to the broker succeeds (one try, 2 s), else the error."""
    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return exc
    return None


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the broker answer, else 503 naming what is down."""
    checks = {"database": database_error() is None, "broker": broker_error() is None}
    status = 200 if all(checks.values()) else 503
    return JsonResponse({name: "ok" if ok else "down" for name, ok in checks.items()},
                        status=status)
