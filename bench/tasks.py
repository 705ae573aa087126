"""The plain-Celery baseline: one fire-and-forget task per recipient, no records kept."""

from functools import cache

import celery
import redis
from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail

DONE_KEY = "bench:plain:done"


@cache
def _counter() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


@shared_task(base=celery.Task, acks_late=True)
def send_plain_email(to: str) -> None:
    send_mail("News", "What is new", None, [to])
    _counter().incr(DONE_KEY)
