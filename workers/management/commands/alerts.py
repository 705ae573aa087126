"""`manage.py alerts check|test`: run the periodic alert checks now, or prove delivery."""

import socket
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from workers.ops.alerts.channels import configured_channels
from workers.ops.alerts.checks import alerts_run_checks
from workers.ops.alerts.models import Alert
from workers.ops.alerts.services import alert_raise


class Command(BaseCommand):
    help = "Run the alert checks once, or send a test alert to the configured channels."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("check", help="thresholds, digests and due deliveries, once (what "
                           "beat and the workers run every ALERTS_CHECK_INTERVAL)")
        actions.add_parser("test", help="send one test alert to every configured channel")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "check":
            outcome = alerts_run_checks(now=timezone.now())
            for alert in [*outcome.raised, *outcome.digests]:
                self.stdout.write(f"{alert.kind:10} {alert.title}")
            self.stdout.write(f"{len(outcome.raised)} threshold alert(s), "
                              f"{len(outcome.digests)} digest(s), {outcome.delivered} "
                              "delivered")
            return
        channels = configured_channels()
        if not channels:
            raise CommandError("no channel configured: set ALERTS_SLACK_WEBHOOK_URL and/or "
                               "ALERTS_EMAIL_TO")
        test = alert_raise(kind=Alert.Kind.THRESHOLD, key=f"test:{time.time()}",
                           title=f"Test alert from {socket.gethostname()}",
                           text="If you can read this, alerts reach you.", deliver_now=True)
        assert test is not None  # a fresh key always opens a window
        test.refresh_from_db()
        if test.delivered_at is None:
            raise CommandError(f"not delivered: {test.last_error}")
        self.stdout.write(f"delivered to {', '.join(channels)}")
