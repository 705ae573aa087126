"""Checks an event batch item by item, so the client learns every problem in one reply,
and the date range of an export request.

Times must lie in the window this app can store, read back and expire: `occurred_at`,
normalised to UTC, from EARLIEST (2000-01-01) to MAX_AHEAD (one day, for clients' clock
skew) past the server's clock. Outside it PostgreSQL would keep a time Python cannot
read back (past year 9999 or before year 1 once in UTC), and a future event would
escape retention. Exports cover whole days within the same first and last years.
"""

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(days=1)
# A batch ({"events": [{"properties": ...}]}) nests its properties 13 levels more at most.
BATCH_MAX_DEPTH = 16
# An export request is one flat object.
EXPORT_REQUEST_MAX_DEPTH = 1
EXPORT_REQUEST_MAX_BYTES = 1024
# Exports: a year and a day at most, on dates between these (no event lies outside them).
MAX_EXPORT_DAYS = 366
EXPORT_FIRST_DATE = EARLIEST.date()
EXPORT_LAST_DATE = date(2100, 12, 31)


@dataclass(frozen=True)
class BatchLimits:
    max_events: int
    max_properties_bytes: int


@dataclass(frozen=True)
class ValidEvent:
    name: str
    occurred_at: datetime
    properties: dict[str, Any]


class BatchRejected(ValueError):
    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(f"{len(errors)} problem(s) in the batch")
        self.errors = errors


class ExportRangeRejected(ValueError):
    """The export request names no range this app exports; the message says why."""


def validate_export_range(*, body: Any) -> tuple[date, date]:
    """`date_from` and `date_to` of a request body, or ExportRangeRejected."""
    try:
        date_from = date.fromisoformat(body["date_from"])
        date_to = date.fromisoformat(body["date_to"])
    except (ValueError, KeyError, TypeError):
        raise ExportRangeRejected('send {"date_from": "YYYY-MM-DD", '
                                  '"date_to": "YYYY-MM-DD"}') from None
    check_export_range(date_from=date_from, date_to=date_to)
    return date_from, date_to


def check_export_range(*, date_from: date, date_to: date) -> None:
    """ExportRangeRejected unless the range is one the export can cover (the API and the
    admin's form alike): a job outside it could never finish."""
    if not EXPORT_FIRST_DATE <= date_from <= date_to <= EXPORT_LAST_DATE:
        raise ExportRangeRejected(f"date_from must not be after date_to, both between "
                                  f"{EXPORT_FIRST_DATE} and {EXPORT_LAST_DATE}")
    if (date_to - date_from).days >= MAX_EXPORT_DAYS:
        raise ExportRangeRejected(f"the range covers at most {MAX_EXPORT_DAYS} days")


def validate_batch(*, body: Any, limits: BatchLimits) -> list[ValidEvent]:
    """All events of the batch, or BatchRejected listing each problem with its index."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise BatchRejected([{"index": None, "reason": "body must be {\"events\": [...]}"}])
    items = body["events"]
    if not 1 <= len(items) <= limits.max_events:
        raise BatchRejected([{"index": None, "reason":
                              f"a batch holds 1 to {limits.max_events} events, not {len(items)}"}])
    valid, errors = [], []
    for index, item in enumerate(items):
        checked = _checked(item, limits)
        if isinstance(checked, str):
            errors.append({"index": index, "reason": checked})
        else:
            valid.append(checked)
    if errors:
        raise BatchRejected(errors)
    return valid


def _checked(item: Any, limits: BatchLimits) -> ValidEvent | str:
    """The event, or the reason it is refused."""
    if not isinstance(item, dict):
        return "an event must be an object"
    name = item.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return "name is required: 1-100 characters of letters, digits and _ . : -"
    occurred_at = item.get("occurred_at")
    try:
        parsed = parse_datetime(occurred_at) if isinstance(occurred_at, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        return "occurred_at is required, as an ISO 8601 date-time"
    if parsed.tzinfo is None:
        return "occurred_at needs a UTC offset, e.g. 2026-11-24T10:00:00Z"
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # past year 9999 or before year 1 once in UTC
        parsed = None
    if parsed is None or not EARLIEST <= parsed <= timezone.now() + MAX_AHEAD:
        return (f"occurred_at must lie between {EARLIEST:%Y-%m-%d} and a day from now "
                f"(in UTC)")
    properties = item.get("properties", {})
    if not isinstance(properties, dict):
        return "properties must be an object"
    if len(json.dumps(properties)) > limits.max_properties_bytes:
        return f"properties exceed {limits.max_properties_bytes} bytes"
    return ValidEvent(name, parsed, properties)
