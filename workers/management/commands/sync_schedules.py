"""`manage.py sync_schedules`: write the schedules defined in code into the database.

Beat's DatabaseScheduler does the same at start-up; running it at deploy time (and in
`make dev`) means a fresh database shows every schedule in the admin before beat starts.
"""

from typing import Any

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand
from django_celery_beat.schedulers import ModelEntry


class Command(BaseCommand):
    help = "Create or update the periodic tasks defined in CELERY_BEAT_SCHEDULE (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            ModelEntry.from_entry(name, app=current_app, **entry)
            self.stdout.write(f"schedule {name}: {entry['task']} {entry['schedule']}")
        self.stdout.write(f"synced {len(settings.CELERY_BEAT_SCHEDULE)} schedule(s)")
