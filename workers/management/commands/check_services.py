"""`manage.py check_services`: one clear line per backing service that is not running."""

from typing import Any

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from kombu.utils.url import maybe_sanitize_url

from workers.ops.health import broker_error, database_error, redis_error

HOW_TO_START = {
    "redis": "start it with: redis-server --daemonize yes (or: docker compose up -d redis)",
    "rabbitmq": "start it with: rabbitmq-server -detached "
                "(or: docker compose --profile rabbitmq up -d rabbitmq)",
    "postgresql": "start it with: pg_ctlcluster <version> main start "
                  "(or: docker compose up -d postgres)",
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
        if broker_error() is not None:
            problems.append(f"{kind} is not reachable at {broker}: "
                            f"{HOW_TO_START[kind.lower()]}")
        if settings.BROKER_IS_RABBITMQ and redis_error() is not None:
            problems.append(f"Redis is not reachable at {maybe_sanitize_url(settings.REDIS_URL)}"
                            f": {HOW_TO_START['redis']}")
        if problems:
            raise CommandError("\n".join(problems))
        self.stdout.write(f"database ({connection.vendor}) and broker ({broker}) are up")
