"""`manage.py send_digest [--date YYYY-MM-DD]`: start a day's digest now (as beat does at 07:00)."""

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.notifications.services import digest_start_for_day


class Command(BaseCommand):
    help = "Create and start the daily digest campaign (once per day, however often it runs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", help="the digest's day, default today")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            day = date.fromisoformat(options["date"]) if options["date"] else timezone.localdate()
        except ValueError as exc:
            raise CommandError(f"--date takes YYYY-MM-DD: {exc}") from None
        campaign = digest_start_for_day(day=day)
        self.stdout.write(f"digest {campaign.key} is {campaign.status} (campaign {campaign.pk})")
