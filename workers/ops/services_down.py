"""What is down among the services a process needs, each as one line that says how to
start it: for `check_services` (`make dev`, `make test`), and for an operator's command
that met a database or broker error (workers/management/operator_command.py)."""

import re

from amqp.exceptions import AMQPError
from celery import current_app
from django.conf import settings
from django.db import connection
from redis.exceptions import AuthenticationError

from workers.core.broker_urls import masked_url
from workers.core.redis_urls import is_sentinel_url
from workers.ops.health import broker_error, database_error, redis_apart, redis_error

HOW_TO_START = {
    "redis": "start it with: redis-server --daemonize yes (or: docker compose up -d redis)",
    "rabbitmq": "start it with: rabbitmq-server -detached "
                "(or: docker compose --profile rabbitmq up -d rabbitmq)",
    "postgresql": "start it with: pg_ctlcluster <version> main start "
                  "(or: docker compose up -d postgres)",
    "sentinel": "check that the Sentinels answer, that REDIS_SENTINEL_MASTER names the group "
                "they monitor, and the passwords (the URL's for Redis, "
                "REDIS_SENTINEL_PASSWORD for the Sentinels); a primary that has just died "
                "is refused until the Sentinels promote its replica (a few seconds after "
                "their down-after-milliseconds)",
}


def services_down() -> list[str]:
    """A line for each of the database, the broker and the platform's Redis (when it is
    not the broker) that does not answer; empty when all do."""
    problems = []
    error = database_error()
    if error is not None:
        vendor = connection.vendor
        cause = _first_line(error)
        # A server that answered and refused (no such database or user, a password, TLS)
        # is running: starting it is not the fix.
        advice = ("check DATABASE_URL: the server answered" if "FATAL" in cause
                  else HOW_TO_START.get(vendor, "start the database"))
        problems.append(f"{vendor} is not reachable ({cause}): {advice}")
    kind = "RabbitMQ" if settings.BROKER_IS_RABBITMQ else "Redis"
    error = broker_error()
    if error is not None:
        problems.append(_unreachable(kind, current_app.conf.broker_url, error,
                                     setting="CELERY_BROKER_URL"))
    if redis_apart() and (error := redis_error()) is not None:
        problems.append(_unreachable("Redis", settings.REDIS_URL, error, setting="REDIS_URL"))
    return problems


def _unreachable(kind: str, url: str, error: Exception, *, setting: str) -> str:
    """One line: what is down, where, and what to do. A server that answered and refused
    (a login, a password, a RabbitMQ vhost that does not exist) runs: the fix is in
    `setting`. Behind Sentinels the server may well run too: the usual causes are a wrong
    group name or password, which the error names, or a failover under way."""
    where = masked_url(url)
    if is_sentinel_url(url):
        return (f"{kind} is not reachable through the Sentinels at {where} "
                f"({_sentinel_cause(error)}): {HOW_TO_START['sentinel']}")
    if isinstance(error, AMQPError | AuthenticationError):
        cause = _first_line(error)
        if cause.startswith("HELLO must be called"):  # redis-py's first command, refused
            cause = "it asks for a password the URL does not give"
        return (f"{kind} at {where} refused the connection ({cause}): "
                f"check {setting}: the server answered")
    return f"{kind} is not reachable at {where}: {HOW_TO_START[kind.lower()]}"


def _sentinel_cause(error: Exception) -> str:
    """redis-py's error, short. Its "No master found" carries the repr of every Sentinel
    client (kilobytes) before what each answered; a refused password reads as a protocol
    error ("HELLO must be called ...") when it is the Redis server's."""
    text = str(error)
    cause, _, answers = _first_line(error).partition(" : ")
    errors = sorted(set(re.findall(r" - (?:[\w.]+:)?(\w+Error)", answers)))
    if errors:
        cause += f"; the Sentinels answered {', '.join(errors)}"
    if "AuthenticationError" in errors or isinstance(error, AuthenticationError) or any(
            sign in text for sign in ("HELLO must be called", "invalid username-password")):
        cause += "; a password was refused"
    return cause


def _first_line(error: Exception) -> str:
    """The error's first line, or its class's name when it has no text."""
    return (str(error).splitlines() or [""])[0] or error.__class__.__name__
