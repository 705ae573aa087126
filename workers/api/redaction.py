"""Hides secrets in payloads wherever an operator sees them (admin, CLI, logs, Sentry).

The stored payload stays exact so a replay sends what failed; only the view is redacted.
Here, with the task-author API, because apps show payloads too (billing's Stripe events).
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


# A quoted key, a colon and its value, in JSON ("key": "v") or a Python repr ('key': 'v').
_KEYED_VALUE = re.compile(
    r"""(?P<head>(?P<q>["'])(?P<key>[^"'\\]*)(?P=q)\s*:\s*)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^,}\]\s{\[]+)""")


def redact_text(text: str) -> str:
    """Text with the values of sensitive-looking keys replaced: a raw message body that is
    not valid JSON (poison messages), or the repr of a dict in an error report."""
    def hide(match: re.Match[str]) -> str:
        if SENSITIVE_KEY.search(match["key"]):
            return f'{match["head"]}{match["q"]}{REDACTED}{match["q"]}'
        value = match["value"]
        if value[0] in "\"'":  # a string may hold a repr of its own ('kwargsrepr': "{...}")
            return f"{match['head']}{value[0]}{redact_text(value[1:-1])}{value[-1]}"
        return match[0]
    return _KEYED_VALUE.sub(hide, text)


def redact_everywhere(value: Any) -> Any:
    """`redact`, and `redact_text` on every string inside: for reports whose values may be
    reprs of objects holding arguments (Sentry's local variables)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: REDACTED if SENSITIVE_KEY.search(str(key)) else redact_everywhere(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_everywhere(item) for item in value]
    return value


def payload_html(args: list[Any], kwargs: dict[str, Any], *, redacted: bool = True) -> str:
    """Arguments as the admin shows them: pretty JSON, sensitive values redacted unless
    the caller (audited, permitted) asks otherwise."""
    payload = {"args": args, "kwargs": kwargs}
    return json_html(redact(payload) if redacted else payload)


def json_html(value: Any) -> str:
    """A JSON value as the admin shows it (pretty, escaped); redact it first."""
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2))
