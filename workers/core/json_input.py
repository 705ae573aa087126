"""JSON from outside (a request body, an operator's edit), parsed within bounds.

`json.loads` alone lets a hostile body through in ways that surface later as a 500 or a
row nobody can read: it recurses, so a nesting of 100k raises RecursionError; an integer
of more than 4,300 digits raises a ValueError that is no JSONDecodeError; it accepts NaN,
Infinity and 1e999, which PostgreSQL's JSON types refuse; and it returns the NUL
character and lone surrogates from their escapes, which PostgreSQL (text and jsonb) and
psycopg refuse. `parse_json` turns each of these into one JSONInputError, whose message
says what is wrong, so a view answers 400 before anything is stored.

Integers are held to PostgreSQL's bigint, the widest a column here can take. The depth is
measured by a scan of the text that skips strings, before the parser runs, because the
parser's own recursion is what must not be reached.
"""

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_INTEGER = 2 ** 63 - 1

# A JSON string (an unterminated one runs to the end of the text).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^][{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_REFUSED_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


class JSONInputError(ValueError):
    """The input is not JSON this project accepts; the message says why, for the client."""


def parse_json(body: bytes, *, max_depth: int, max_bytes: int) -> Any:
    """The value `body` holds, or JSONInputError.

    Refused: more than `max_bytes`, text that is not UTF-8, arrays and objects nested
    deeper than `max_depth`, NaN and the infinities (also as 1e999), integers beyond a
    bigint, and strings (keys included) holding NUL or a lone surrogate. `max_depth` is
    for what the caller expects (tens of levels): json itself recurses once per level.
    """
    if len(body) > max_bytes:
        raise JSONInputError(f"body exceeds {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JSONInputError("body is not UTF-8") from None
    _check_depth(text, max_depth)
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int,
                           parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"body is not JSON: {exc}") from None
    _check_strings(value)
    return value


def _check_depth(text: str, max_depth: int) -> None:
    """The deepest nesting, from the brackets left once strings are taken out: the running
    sum (+1 opening, -1 closing) is computed in C, a few hundredths of a second a MB."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > max_depth:
        raise JSONInputError(f"JSON nests deeper than {max_depth} levels")


def _refuse_constant(name: str) -> float:
    raise JSONInputError(f"{name} is not a JSON number")


def _bounded_int(digits: str) -> int:
    # Measured before int() runs: a string of many digits is what int() must not see.
    number = int(digits) if len(digits.lstrip("-")) <= len(str(MAX_INTEGER)) else None
    if number is None or abs(number) > MAX_INTEGER:
        raise JSONInputError(f"integers must lie within ±{MAX_INTEGER}")
    return number


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise JSONInputError(f"number {literal[:40]} is out of range")
    return number


def _check_strings(value: Any) -> None:
    """Walked with a list, not recursion: the depth is bounded, but so is the stack."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and _REFUSED_CHARACTERS.search(item):
            raise JSONInputError("strings must not hold NUL (\\u0000) or a lone surrogate")
