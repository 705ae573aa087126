"""Checks an event batch item by item, so the client learns every problem in one reply."""

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


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
    if not isinstance(name, str) or not NAME.match(name):
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
    properties = item.get("properties", {})
    if not isinstance(properties, dict):
        return "properties must be an object"
    if len(json.dumps(properties)) > limits.max_properties_bytes:
        return f"properties exceed {limits.max_properties_bytes} bytes"
    return ValidEvent(name, parsed, properties)
