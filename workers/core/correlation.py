"""The correlation id: one value from the request that started some work, through every
task that work enqueues, and every task those enqueue, so their log lines can be joined.

It lives in a context variable: the web middleware binds it for a request (its
`X-Request-ID`, or a new one), the worker binds it for a task (from the message header),
and every publish copies it into the message headers (outbox rows keep it too).
"""

import os
import re
from contextvars import ContextVar

_current: ContextVar[str] = ContextVar("correlation_id", default="")

#: What an incoming X-Request-ID may look like; anything else is replaced, not trusted.
VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def correlation_id() -> str:
    """The bound id, or "" outside a request or task."""
    return _current.get()


def new_correlation_id() -> str:
    """32 hex digits of 128 random bits, as uuid4().hex was, without building a UUID (a
    publish makes one when nothing is bound: each message of a batch outside a request)."""
    return os.urandom(16).hex()


def bind_correlation_id(value: str | None) -> str:
    """Bind `value` if it looks like an id, else a new one; return what was bound."""
    bound = value if value and VALID.match(value) else new_correlation_id()
    _current.set(bound)
    return bound


def unbind_correlation_id() -> None:
    _current.set("")
