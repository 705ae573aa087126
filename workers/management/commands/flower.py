"""`manage.py flower`: starts Flower, and refuses to without basic-auth credentials.

Flower shows task arguments and can revoke tasks; an open Flower is an open door. It
reads FLOWER_BASIC_AUTH, FLOWER_ADDRESS (loopback unless set) and FLOWER_PORT from the
environment itself, so the secret never appears on a command line, and runs in this
process so that its metrics and health paths ask for the same login as the rest, and its
Broker tab can read the platform's Redis transport (workers/ops/flower.py).
"""

import os
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workers.ops.flower import (
    leave_without_pending_broadcasts,
    require_login_everywhere,
    show_broker_as,
)


class Command(BaseCommand):
    help = "Run Flower with basic auth from FLOWER_BASIC_AUTH (user:password[,user:password])."

    def handle(self, *args: Any, **options: Any) -> None:
        pairs = [pair for pair in settings.FLOWER_BASIC_AUTH.split(",") if pair]
        if not pairs or not all(_valid(pair) for pair in pairs):
            raise CommandError("refusing to start Flower without auth: set FLOWER_BASIC_AUTH "
                               "to user:password (see .env.example)")
        if not settings.FLOWER_BASIC_AUTH.isascii():
            # Flower compares logins with hmac.compare_digest, which raises on non-ASCII
            # text: every request would be a 500 and nobody could log in.
            raise CommandError("FLOWER_BASIC_AUTH must be ASCII: Flower cannot compare "
                               "other characters (choose a password without them)")
        os.environ["FLOWER_BASIC_AUTH"] = settings.FLOWER_BASIC_AUTH
        os.environ["FLOWER_ADDRESS"] = settings.FLOWER_ADDRESS  # Flower's default is every address
        require_login_everywhere()
        if settings.CELERY_BROKER_TRANSPORT:
            # Flower takes the transport for the URL's scheme; the platform's is a class
            # path. Every URL of a failover list, the first first, as kombu's own tries.
            show_broker_as(urls=settings.CELERY_BROKER_URL.split(";"))
        current_app.start(argv=["flower"])
        leave_without_pending_broadcasts()


def _valid(pair: str) -> bool:
    user, _, password = pair.partition(":")
    return bool(user) and len(password) >= 8
