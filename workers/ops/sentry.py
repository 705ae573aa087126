"""Sentry start-up, from the workers app's `ready()` so web, workers and beat all report,
and what every report is rid of before it leaves the process (`scrub_event`)."""

import logging
from typing import Any, cast

import sentry_sdk
from django.conf import settings
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event

from workers.core.known_secrets import known_secrets
from workers.core.redaction import REDACTED
from workers.ops.secret_scrubbing import (
    EXACT_NAMES,
    is_sensitive_name,
    scrub_command_line,
    scrub_data,
    scrub_log_entry,
    scrub_query_string,
    scrub_text,
)

#: Exact names the SDK's scrubber misses: Stripe's signature header and the WSGI spellings
#: of the credential headers (how they appear in `environ` and `request.META`).
SDK_DENYLIST_ADDITIONS = ["stripe-signature", "http_stripe_signature", "http_authorization",
                          "http_proxy_authorization", "http_cookie", "http_x_api_key",
                          *sorted(EXACT_NAMES)]


def init_sentry(*, dsn: str, environment: str, release: str, traces_sample_rate: float) -> bool:
    """Initialise Sentry when a DSN is configured; return whether it was.

    Beat's cron monitors are on so a schedule that stops firing raises an alert, and
    `send_default_pii` stays off: task arguments may carry personal data. Every error and
    transaction passes `scrub_event` last; log breadcrumbs pass `scrub_breadcrumb` when
    recorded, while their log call's template is still at hand.
    """
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release or None,
        send_default_pii=False,
        traces_sample_rate=traces_sample_rate,
        event_scrubber=event_scrubber(),
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
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


def event_scrubber() -> EventScrubber:
    """The SDK's own scrubber, searching nested data too: it runs before the event is
    serialised, so it sees the live values rather than the reprs `scrub_event` gets, and
    it also covers span data. It matches exact names only; `scrub_event` does the rest."""
    return EventScrubber(denylist=DEFAULT_DENYLIST + SDK_DENYLIST_ADDITIONS, recursive=True)


def scrub_event(event: Event, hint: dict[str, Any]) -> Event:
    """Redact secrets wherever an event carries data: exception messages, every frame's
    local variables and source lines, log templates, parameters and messages, the request
    (URL, query string, headers, cookies, body), breadcrumbs, `extra` (the task's
    arguments, the command line), custom contexts, tags and span data. Not the event's own
    structure: it has keys (`spans`, `span_id`) a key pattern could hit, and nothing secret.
    The same for transactions, which carry the request too."""
    fields = cast(dict[str, Any], event)  # walked as the JSON it is about to become
    known = known_secrets()
    _scrub_exceptions(fields, known)
    for frame in _frames(fields):
        _scrub_frame(frame, known)
    if isinstance(fields.get("logentry"), dict):
        fields["logentry"] = scrub_log_entry(fields["logentry"], known=known)
    if isinstance(fields.get("message"), str):
        fields["message"] = scrub_text(fields["message"], known=known)
    if isinstance(fields.get("request"), dict):
        _scrub_request(fields["request"], known)
    _scrub_breadcrumbs(fields, known)
    _scrub_annotations(fields, known)
    _scrub_spans(fields, known)
    return event


def scrub_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb:
    """A log breadcrumb keeps only its formatted message: hide the parameters its template
    labels as secrets now (`scrub_event` cannot see the template later)."""
    record = (hint or {}).get("log_record")
    if isinstance(record, logging.LogRecord) and record.args and \
            isinstance(crumb.get("message"), str):
        crumb["message"] = scrub_log_entry({"message": str(record.msg), "params": record.args,
                                            "formatted": crumb["message"]})["formatted"]
    return crumb


def _scrub_exceptions(event: dict[str, Any], known: tuple[str, ...]) -> None:
    for exception in (event.get("exception") or {}).get("values") or []:
        if isinstance(exception.get("value"), str):
            exception["value"] = scrub_text(exception["value"], known=known)


def _frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Every frame of the event: its exceptions', its threads' and its own stack trace."""
    stacktraces = [event.get("stacktrace")]
    stacktraces += [thread.get("stacktrace")
                    for thread in (event.get("threads") or {}).get("values") or []]
    stacktraces += [exception.get("stacktrace")
                    for exception in (event.get("exception") or {}).get("values") or []]
    return [frame for stacktrace in stacktraces if isinstance(stacktrace, dict)
            for frame in stacktrace.get("frames") or [] if isinstance(frame, dict)]


def _scrub_frame(frame: dict[str, Any], known: tuple[str, ...]) -> None:
    """Its local variables, and its source lines: a credential written into the code
    should not spread further than the code."""
    if isinstance(frame.get("vars"), dict):
        frame["vars"] = scrub_data(frame["vars"], known=known)
    for part in ("pre_context", "context_line", "post_context"):
        if part in frame:
            frame[part] = scrub_data(frame[part], known=known)


def _scrub_request(request: dict[str, Any], known: tuple[str, ...]) -> None:
    if isinstance(request.get("url"), str):
        request["url"] = scrub_text(request["url"], known=known)
    query = request.get("query_string")
    if query is not None:
        request["query_string"] = (scrub_query_string(query, known=known)
                                   if isinstance(query, str) else scrub_data(query, known=known))
    if "cookies" in request:  # each one a session, a CSRF token or a tracker
        cookies = request["cookies"]
        request["cookies"] = ({name: REDACTED for name in cookies}
                              if isinstance(cookies, dict) else REDACTED)
    for part in ("headers", "data", "env"):
        if part in request:
            request[part] = scrub_data(request[part], known=known)


def _scrub_breadcrumbs(event: dict[str, Any], known: tuple[str, ...]) -> None:
    breadcrumbs = event.get("breadcrumbs")
    for crumb in (breadcrumbs.get("values") or []) if isinstance(breadcrumbs, dict) else []:
        if isinstance(crumb.get("message"), str):
            crumb["message"] = scrub_text(crumb["message"], known=known)
        if isinstance(crumb.get("data"), dict):
            crumb["data"] = _scrub_http_data(crumb["data"], known)


def _scrub_http_data(data: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """Breadcrumb or span data, where an HTTP client puts the query string apart."""
    scrubbed = scrub_data(data, known=known)
    if isinstance(data.get("http.query"), str):
        scrubbed["http.query"] = scrub_query_string(data["http.query"], known=known)
    return dict(scrubbed)


def _scrub_annotations(event: dict[str, Any], known: tuple[str, ...]) -> None:
    """`extra` (the Celery integration's `celery-job` with the task's arguments, a log
    record's extra fields, the command line), tags, custom contexts and the user. The
    `trace` context is left whole: ids and span status only."""
    if isinstance(event.get("extra"), dict):
        extra = event["extra"]
        argv = extra.get("sys.argv")
        event["extra"] = scrub_data(extra, known=known)
        if isinstance(argv, list):
            event["extra"]["sys.argv"] = scrub_command_line(argv, known=known)
    if isinstance(event.get("tags"), dict):
        event["tags"] = {name: REDACTED if is_sensitive_name(name)
                         else scrub_data(value, known=known)
                         for name, value in event["tags"].items()}
    if isinstance(event.get("contexts"), dict):
        event["contexts"] = {name: context if name == "trace" else scrub_data(context, known=known)
                             for name, context in event["contexts"].items()}
    if isinstance(event.get("user"), dict):
        event["user"] = scrub_data(event["user"], known=known)


def _scrub_spans(event: dict[str, Any], known: tuple[str, ...]) -> None:
    for span in event.get("spans") or []:
        if isinstance(span.get("description"), str):
            span["description"] = scrub_text(span["description"], known=known)
        if isinstance(span.get("data"), dict):
            span["data"] = _scrub_http_data(span["data"], known)
