"""Sentry start-up, from the workers app's `ready()` so web, workers and beat all report."""

import logging
from typing import Any

import sentry_sdk
from django.conf import settings
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.types import Event

from workers.api.redaction import redact_everywhere


def init_sentry(*, dsn: str, environment: str, release: str, traces_sample_rate: float) -> bool:
    """Initialise Sentry when a DSN is configured; return whether it was.

    Beat's cron monitors are on so a schedule that stops firing raises an alert, and
    `send_default_pii` stays off: task arguments may carry personal data. On top of the
    SDK's own scrubber, `scrub_event` hides what the admin hides (the same key pattern).
    """
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release or None,
        send_default_pii=False,
        traces_sample_rate=traces_sample_rate,
        before_send=scrub_event,
        integrations=[
            DjangoIntegration(),
            CeleryIntegration(monitor_beat_tasks=True,
                              exclude_beat_tasks=_sub_minute_schedules()),
            RedisIntegration(),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
    )
    return True


def _sub_minute_schedules() -> list[str]:
    """Beat entries Sentry Crons cannot monitor (intervals under a minute, such as the
    outbox sweep): excluded, or beat would log a warning at each of their sends."""
    return [name for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
            if isinstance(entry["schedule"], int | float) and entry["schedule"] < 60]


def scrub_event(event: Event, hint: dict[str, Any]) -> Event:
    """Redact sensitive-looking keys where an event carries data: the task's arguments
    (`extra`), local variables of each frame, request bodies and breadcrumb data. Not the
    whole event: its own structure has keys (`spans`, `span_id`) the pattern would hit."""
    if "extra" in event:
        event["extra"] = redact_everywhere(event["extra"])
    for exception in (event.get("exception") or {}).get("values") or []:
        for frame in (exception.get("stacktrace") or {}).get("frames") or []:
            if "vars" in frame:
                frame["vars"] = redact_everywhere(frame["vars"])
    request = event.get("request")
    if isinstance(request, dict) and "data" in request:
        request["data"] = redact_everywhere(request["data"])
    breadcrumbs = event.get("breadcrumbs")
    for crumb in (breadcrumbs.get("values") or []) if isinstance(breadcrumbs, dict) else []:
        if "data" in crumb:
            crumb["data"] = redact_everywhere(crumb["data"])
    return event
