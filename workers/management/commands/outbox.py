"""`manage.py outbox stats|sweep`: how many jobs wait to be published, and publish them now."""

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from workers.core.broker_health import broker_reachable
from workers.core.outbox import outbox_pending_stats, outbox_sweep
from workers.management.operator_command import OperatorCommand


class Command(OperatorCommand):
    help = "Show unpublished outbox jobs, or publish them (what beat's sweeper does)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("stats", help="unpublished jobs and the oldest one's age")
        actions.add_parser("sweep", help="publish every job left unpublished past the grace")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "stats":
            pending, oldest = outbox_pending_stats(now=timezone.now())
            age = "-" if oldest is None else f"{oldest:.1f}s"
            self.stdout.write(f"unpublished {pending}  oldest {age}")
            return
        published = outbox_sweep(now=timezone.now())
        pending, oldest = outbox_pending_stats(now=timezone.now())
        self.stdout.write(f"published {published}, still unpublished {pending}")
        if oldest is None or oldest <= settings.OUTBOX_SWEEP_GRACE:
            return
        if broker_reachable():  # a job refused on its own (a queue gone in a deploy)
            raise CommandError("jobs past the grace period are still unpublished although the "
                               "broker answers: each keeps its reason in its last error "
                               "(admin: Outbox messages)")
        raise CommandError("jobs past the grace period could not be published: is the "
                           "broker reachable? (python manage.py check_services)")
