"""A failure's fields made storable in PostgreSQL, whatever the failed job carried.

The content of a failure is not ours: a hostile or broken client chooses the arguments,
the exception message, the raw body and the headers. PostgreSQL refuses some of it: NUL
in text and in jsonb, lone surrogates in jsonb (and psycopg cannot even encode a
surrogate for text), NaN and Infinity in JSON, a header longer than its column. Such a
`DataError` is not an outage: spooled, it would stop the spool drain on that entry for
good, with every dead letter of a real outage behind it.

The rule, applied to every failure before it is stored or spooled:

- in text (message, traceback, raw body, task name, queue, worker, exception type,
  task id), NUL becomes the four characters `\\x00` and each surrogate its escape
  `\\udXXX`, the rendering a raw body already gives the bytes it could not decode;
- in args, kwargs and the earlier attempts' errors, every string (keys too) follows the
  same rule, NaN and the infinities become the strings "NaN", "Infinity" and
  "-Infinity", and a value JSON cannot hold becomes its repr;
- a value longer than its column is cut; a task id cut keeps a digest of the whole, and
  a task id escaped a digest of what it was (escaping is not one-to-one: a NUL and the
  four characters backslash-x-0-0 read alike), so two ids stay two rows and the same one
  reported twice stays one.

Text is for humans, and reads the same escaped. The arguments are a call: when they had
to change, what is stored is no longer what failed, and replaying it could do something
else (a backslash-x-0-0 where the job had a NUL). Such a row says so at the end of its
message (ESCAPED_CALL_NOTE) and workers/dead_letters/rules.py refuses to replay it until
an operator has edited its arguments (or discards it). Arguments that needed no change
are stored exactly, and replay as before. Escaping what is already escaped changes
nothing, so a spooled entry can go through this again when it is drained.
"""

import hashlib
import json
import math
import re
from typing import Any

from workers.dead_letters.models import DeadLetter

ESCAPED_CALL_NOTE = ("[arguments stored escaped: they held characters or numbers PostgreSQL "
                     "cannot store (NUL, surrogates, NaN); edit them before a replay]")

TEXT_FIELDS = ("task_name", "queue", "exception_type", "message", "traceback", "worker",
               "raw_body")
CALL_FIELDS = ("args", "kwargs")
_BIGINT = 2 ** 63 - 1
_REFUSED = re.compile("[\x00\ud800-\udfff]")


def storable_fields(*, fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of a dead letter's fields that PostgreSQL accepts (the rule above)."""
    stored = dict(fields)
    for name in ("task_id", *TEXT_FIELDS):
        if isinstance(stored.get(name), str):
            text = storable_text(stored[name])
            if name == "task_id" and text != stored[name]:
                text = f"{text}~{_digest(stored[name])}"  # "a\x00" must not be "a\\x00"'s row
            stored[name] = _fitted(name, text)
    call_changed = False
    for name in CALL_FIELDS:
        if name in stored:
            stored[name], changed = storable_json(stored[name])
            call_changed = call_changed or changed
    if "attempt_errors" in stored:
        stored["attempt_errors"] = storable_json(stored["attempt_errors"])[0]
    replay_of_id = stored.get("replay_of_id")
    if replay_of_id is not None and not dead_letter_id_usable(replay_of_id):
        stored["replay_of_id"] = None  # a header nothing of ours wrote: no row it could be
    if call_changed and not call_was_escaped(str(stored.get("message", ""))):
        message = str(stored.get("message") or "")
        stored["message"] = f"{message}\n{ESCAPED_CALL_NOTE}" if message else ESCAPED_CALL_NOTE
    return stored


def dead_letter_id_usable(value: object) -> bool:
    """Whether `value`, read from a message's `replay_of` header (which any producer can
    set), can be a dead letter's id: an integer, not a bool, within a positive bigint."""
    return type(value) is int and 0 < value <= _BIGINT


def call_was_escaped(message: str) -> bool:
    """Whether a stored row's arguments differ from the call that failed."""
    return message.endswith(ESCAPED_CALL_NOTE)


def message_without_note(message: str) -> str:
    """The failure's own message, for fingerprints: escaped or not, one cause."""
    return message.removesuffix(ESCAPED_CALL_NOTE).rstrip("\n")


def storable_text(text: str) -> str:
    return _REFUSED.sub(_escape, text)


def storable_json(value: Any) -> tuple[Any, bool]:
    """`value` as JSON PostgreSQL stores, and whether that changed it (a tuple becoming a
    list is no change: JSON has no tuples, and the replay gets a list either way)."""
    try:
        return _json(value)
    except RecursionError:
        return "<nested too deeply to store>", True


def _json(value: Any) -> tuple[Any, bool]:
    if value is None or isinstance(value, bool):
        return value, False
    if isinstance(value, int):
        try:
            str(value)
        except ValueError:  # more digits than Python prints (and JSON carries)
            return f"<an integer of {value.bit_length()} bits>", True
        return int(value), False
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value), False
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity", True
    if isinstance(value, str):
        text = storable_text(value)
        return text, text != value
    if isinstance(value, list | tuple):
        changed = False
        items = []
        for item in value:
            stored, item_changed = _json(item)
            items.append(stored)
            changed = changed or item_changed
        return items, changed
    if isinstance(value, dict):
        changed = False
        result: dict[str, Any] = {}
        for key, item in value.items():
            name, key_changed = _key(key)
            stored, item_changed = _json(item)
            changed = changed or key_changed or item_changed or name in result
            result[name] = stored
        return result, changed
    return _repr(value), True


def _key(key: Any) -> tuple[str, bool]:
    """An object key: a number, bool or None as JSON writes it, anything else its repr."""
    if isinstance(key, str):
        text = storable_text(key)
        return text, text != key
    if key is None or isinstance(key, bool | int | float):
        stored, changed = _json(key)  # NaN, or an integer too long to print: text already
        return (stored if isinstance(stored, str) else json.dumps(stored)), changed
    return _repr(key), True


def _repr(value: Any) -> str:
    try:
        return storable_text(repr(value))
    except Exception:  # a repr of its own that fails: the type is all there is to keep
        return f"<a {type(value).__name__} that cannot be shown>"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\x00" if char == "\x00" else f"\\u{ord(char):04x}"


def _fitted(name: str, text: str) -> str:
    limit = getattr(DeadLetter._meta.get_field(name), "max_length", None)
    if limit is None or len(text) <= limit:
        return text
    if name != "task_id":
        return text[:limit]
    digest = _digest(text)
    return f"{text[:limit - len(digest) - 1]}~{digest}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
