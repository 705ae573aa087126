"""`manage.py check_services`: one clear line per backing service that is not running."""

from typing import Any

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from kombu.utils.url import maybe_sanitize_url

from workers.core.redis_urls import is_sentinel_url
from workers.ops.health import broker_error, database_error, redis_error

HOW_TO_START = {
    "redis": "start it with: redis-server --daemonize yes (or: docker compose up -d redis)",
    "rabbitmq": "start it with: rabbitmq-server -detached "
                "(or: docker compose --profile rabbitmq up -d rabbitmq)",
    "postgresql": "start it with: pg_ctlcluster <version> main start "
                  "(or: docker compose up -d postgres)",
    "sentinel": "check that the Sentinels answer, that REDIS_SENTINEL_MASTER names the group "
                "they monitor, and the passwords (the URL's for Redis, "
                "REDIS_SENTINEL_PASSWORD for the Sentinels)",
}


class Command(BaseCommand):
    help = ("Fail fast, with the fix in one line, when the database, the broker or Redis "
            "is unreachable.")

    def handle(self, *args: Any, **options: Any) -> None:
        problems = []
        error = database_error()
        if error is not None:
            vendor = connection.vendor
            problems.append(f"{vendor} is not reachable ({error.__class__.__name__}): "
                            f"{HOW_TO_START.get(vendor, 'start the database')}")
        broker = maybe_sanitize_url(current_app.conf.broker_url)
        kind = "RabbitMQ" if settings.BROKER_IS_RABBITMQ else "Redis"
        error = broker_error()
        if error is not None:
            problems.append(_unreachable(kind, current_app.conf.broker_url, error))
        if settings.BROKER_IS_RABBITMQ and (error := redis_error()) is not None:
            problems.append(_unreachable("Redis", settings.REDIS_URL, error))
        if problems:
            raise CommandError("\n".join(problems))
        self.stdout.write(f"database ({connection.vendor}) and broker ({broker}) are up")


def _unreachable(kind: str, url: str, error: Exception) -> str:
    """One line: what is down, where, and what to do. Behind Sentinels the server may well
    run: the usual causes are a wrong group name or password, which the error names."""
    where = maybe_sanitize_url(url)
    if is_sentinel_url(url):
        cause = (str(error).splitlines() or [error.__class__.__name__])[0]
        return (f"{kind} is not reachable through the Sentinels at {where} ({cause}): "
                f"{HOW_TO_START['sentinel']}")
    return f"{kind} is not reachable at {where}: {HOW_TO_START[kind.lower()]}"
