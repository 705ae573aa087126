"""`manage.py check_services`: one clear line per backing service that is not running."""

from typing import Any

from celery import current_app
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from workers.core.broker_urls import masked_url
from workers.ops.services_down import services_down


class Command(BaseCommand):
    help = ("Fail fast, with the fix in one line, when the database, the broker or Redis "
            "is unreachable.")

    def handle(self, *args: Any, **options: Any) -> None:
        problems = services_down()
        if problems:
            raise CommandError("\n".join(problems))
        broker = masked_url(current_app.conf.broker_url)
        self.stdout.write(f"database ({connection.vendor}) and broker ({broker}) are up")
