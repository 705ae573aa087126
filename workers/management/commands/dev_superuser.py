"""`manage.py dev_superuser`: the admin login `make dev` prints. Refused outside dev."""

from typing import Any

import environ
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

env = environ.Env()


class Command(BaseCommand):
    help = "Create the development superuser if it does not exist, and print its login."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.DJANGO_ENV != "dev":
            raise CommandError("dev_superuser only runs with DJANGO_ENV=dev")
        username = env.str("DEV_SUPERUSER_USERNAME", default="admin")
        password = env.str("DEV_SUPERUSER_PASSWORD", default="admin-dev")
        user_model = get_user_model()
        if not user_model.objects.filter(username=username).exists():
            user_model.objects.create_superuser(username=username, email=f"{username}@example.com",
                                                password=password)
        self.stdout.write(f"admin login: {username} / {password}")
