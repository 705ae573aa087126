"""Hides secrets in payloads wherever an operator sees them (admin, CLI, logs).

The stored payload stays exact so a replay sends what failed; only the view is redacted.
"""

import json
import re
from typing import Any

from django.utils.html import format_html

REDACTED = "[redacted]"
SENSITIVE_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|auth|card|cvc|cvv|pan|iban|ssn|signature",
    re.IGNORECASE,
)


def redact(value: Any) -> Any:
    """A copy of `value` with the values of sensitive-looking keys replaced, at any depth."""
    if isinstance(value, dict):
        return {
            key: REDACTED if SENSITIVE_KEY.search(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


_SENSITIVE_JSON_VALUE = re.compile(
    r'("(?P<key>[^"\\]*)"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)')


def redact_text(text: str) -> str:
    """A raw message body with the values of sensitive-looking JSON keys replaced.

    For bodies that are not valid JSON (poison messages), so only the text is there.
    """
    def hide(match: re.Match) -> str:
        if SENSITIVE_KEY.search(match["key"]):
            return f'{match[1]}"{REDACTED}"'
        return match[0]
    return _SENSITIVE_JSON_VALUE.sub(hide, text)


def payload_html(args: list, kwargs: dict) -> str:
    """Arguments as the admin shows them: pretty JSON with sensitive values redacted."""
    shown = json.dumps({"args": redact(args), "kwargs": redact(kwargs)}, indent=2)
    return format_html("<pre>{}</pre>", shown)
