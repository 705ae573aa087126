"""The base of the commands an operator runs against live work (`dlq`, `queues`,
`outbox`)."""

from django.core.management.base import BaseCommand


class OperatorCommand(BaseCommand):
    """A command that does not run Django's system checks first.

    They are the deploy's to run (`manage.py check --deploy`, `migrate`). Before each
    command they took 0.2 to 0.3 s of its start (the URLs, the admin, every model), on
    the path of `dlq requeue` and its replays, and one that failed would have kept the
    operator from the dead letters in the middle of an incident."""

    requires_system_checks: list[str] = []  # Django's own attribute
