"""The base of the commands an operator runs against live work (`dlq`, `queues`,
`outbox`)."""

import argparse
from typing import Any

from amqp.exceptions import AMQPError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from workers.ops.health import migrations_error
from workers.ops.services_down import services_down


class OperatorCommand(BaseCommand):
    """A command that does not run Django's system checks first, and that answers a
    service that is down with one line saying how to start it.

    The checks are the deploy's to run (`manage.py check --deploy`, `migrate`). Before each
    command they took 0.2 to 0.3 s of its start (the URLs, the admin, every model), on
    the path of `dlq requeue` and its replays, and one that failed would have kept the
    operator from the dead letters in the middle of an incident. `--skip-checks`, which
    scripts may pass, is still taken.

    A database or broker error that a down service, a refused login or a database without
    its tables explains ends the command with that explanation instead of a traceback
    (RabbitMQ's refusals come as py-amqp's own errors, not kombu's); any other is raised
    as it came."""

    requires_system_checks: list[str] = []  # Django's own attribute

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--skip-checks", action="store_true", help=argparse.SUPPRESS)
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except (DatabaseError, BrokerError, AMQPError, RedisError) as error:
            problems = services_down()
            if problems:
                raise CommandError("\n".join(problems)) from error
            if isinstance(error, DatabaseError) and (pending := migrations_error()) is not None:
                raise CommandError(f"the database is not migrated ({pending}): run "
                                   "python manage.py migrate") from error
            raise
