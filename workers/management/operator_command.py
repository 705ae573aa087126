"""The base of the commands an operator runs against live work (`dlq`, `queues`,
`outbox`)."""

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class OperatorCommand(BaseCommand):
    """A command that does not run Django's system checks first.

    They are the deploy's to run (`manage.py check --deploy`, `migrate`). Before each
    command they took 0.2 to 0.3 s of its start (the URLs, the admin, every model), on
    the path of `dlq requeue` and its replays, and one that failed would have kept the
    operator from the dead letters in the middle of an incident. `--skip-checks`, which
    scripts may pass, is still taken."""

    requires_system_checks: list[str] = []  # Django's own attribute

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--skip-checks", action="store_true", help=argparse.SUPPRESS)
        return parser
