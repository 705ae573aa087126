"""Liveness and readiness of the web process, and one answer to "is the database up, is the
broker up, is Redis up" for `/readyz`, `check_services` and `queues probe`. The broker's
answer is `workers.core.broker_health`'s, which the outbox asks after every commit: one try,
no retries."""

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from workers.core.broker_health import rabbitmq_error, redis_broker_error
from workers.core.platform_redis import redis_client


def database_error() -> Exception | None:
    """None if the default database answers a query, else the error."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return exc
    return None


def broker_error() -> Exception | None:
    """None if one connection to the broker succeeds (one try, 2 s; on RabbitMQ, one per
    node listed), else the error."""
    if settings.BROKER_IS_RABBITMQ:
        return rabbitmq_error()
    return redis_broker_error()


def redis_apart() -> bool:
    """Whether the platform's Redis (REDIS_URL) is not the broker, so is checked on its
    own: always beside RabbitMQ, and beside a Redis broker when it names another."""
    return settings.REDIS_URL != settings.CELERY_BROKER_URL


def redis_error() -> Exception | None:
    """None if the platform's Redis answers a ping (one try), else the error. With a Redis
    broker this is the broker; with RabbitMQ, locks, dedup keys and limits live here."""
    try:
        redis_client().ping()
    except Exception as exc:
        return exc
    return None


def migrations_error() -> Exception | None:
    """None if every migration on disk is applied to the default database."""
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return exc
    if pending:
        return RuntimeError(f"{len(pending)} migration(s) not applied")
    return None


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests. No I/O, so a database or broker outage does
    not get every web container restarted (that is what `/readyz` is for)."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database answers, its migrations are applied and the broker
    (and the platform's Redis, when it is another) answers; else 503, naming what is down."""
    checks = {"database": database_error(), "migrations": None, "broker": broker_error()}
    if redis_apart():  # else the broker check was Redis
        checks["redis"] = redis_error()
    if checks["database"] is None:
        checks["migrations"] = migrations_error()
    else:
        checks["migrations"] = RuntimeError("database unreachable")
    body = {name: "ok" if error is None else f"down: {type(error).__name__}"
            for name, error in checks.items()}
    status = 200 if all(error is None for error in checks.values()) else 503
    return JsonResponse(body, status=status)
