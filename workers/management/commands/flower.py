"""`manage.py flower`: starts Flower, and refuses to without basic-auth credentials.

Flower shows task arguments and can revoke tasks; an open Flower is an open door. It
reads FLOWER_BASIC_AUTH (and FLOWER_PORT) from the environment itself, so the secret never
appears on a command line.
"""

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run Flower with basic auth from FLOWER_BASIC_AUTH (user:password[,user:password])."

    def handle(self, *args: Any, **options: Any) -> None:
        pairs = [pair for pair in settings.FLOWER_BASIC_AUTH.split(",") if pair]
        if not pairs or not all(_valid(pair) for pair in pairs):
            raise CommandError("refusing to start Flower without auth: set FLOWER_BASIC_AUTH "
                               "to user:password (see .env.example)")
        os.environ["FLOWER_BASIC_AUTH"] = settings.FLOWER_BASIC_AUTH
        argv = [sys.executable, "-m", "celery", "-A", "config", "flower"]
        os.execv(sys.executable, argv)  # noqa: S606 (fixed argv, no shell)


def _valid(pair: str) -> bool:
    user, _, password = pair.partition(":")
    return bool(user) and len(password) >= 8
