"""Failure fingerprints: thousands of dead letters from one outage are a handful of causes.

Two failures share a fingerprint when they come from the same task, raise the same
exception type and say the same thing once the parts that differ per job are masked:
uuids, emails, timestamps, hex ids and numbers. Alerts fire once per fingerprint, and the
metrics count the distinct fingerprints still open.
"""

import hashlib
import re

# Order matters: the longer shapes first, so a uuid's digits are not masked as numbers.
_MASKS = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
     "<uuid>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
                r"(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "<date>"),
    (re.compile(r"\b(?:0x)?(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", re.I),
     "<hex>"),
    (re.compile(r"\b[a-z]{2,8}_[A-Za-z0-9]{6,}\b"), "<id>"),  # Stripe-style ids: in_1Mx…
    (re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?"), "<n>"),  # not in words: utf8
)
_MAX_MESSAGE = 500


def normalise_message(message: str) -> str:
    """The message with every per-job part masked, whitespace collapsed, bounded in size."""
    text = message[:_MAX_MESSAGE * 4]
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return " ".join(text.split())[:_MAX_MESSAGE]


def failure_fingerprint(*, task_name: str, exception_type: str, message: str) -> str:
    """A short stable hash of task, exception type and normalised message."""
    key = "\x1f".join((task_name, exception_type, normalise_message(message)))
    return hashlib.sha256(key.encode()).hexdigest()[:16]
