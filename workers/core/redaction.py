"""Hides secrets wherever a person sees a job: admin pages, exports, the CLI, alerts, logs,
Sentry, and the argument reprs Celery puts in each message (what Flower shows).

The stored payload stays exact so a replay sends what failed; only what is shown is
redacted. Here, with the task-author API, because apps show payloads too (billing's Stripe
events). Three rules, applied together:

- **By name.** A value is hidden whole when its key, or the task parameter a positional
  argument binds to (`redact_call`), names a secret: see `sensitive_key`.
- **By shape.** A string that looks like a secret is hidden whatever its key: Stripe secret
  and restricted keys (`sk_live_…`, `rk_test_…`), webhook secrets (`whsec_…`), `Bearer`
  and `Basic` credentials, JWTs, GitHub, Slack, AWS and Google keys, PEM private keys, the
  password of a URL (`scheme://user:password@`), a long `key=` in a query string, and card
  numbers (13 to 19 digits that pass the Luhn check).
- **In text.** Messages, tracebacks, raw bodies and reprs get both: `key: value`,
  `key=value`, `"key": "value"` and `'key': 'value'` pairs whose key names a secret, at any
  depth of escaping (`argsrepr` quoted inside a repr inside a string is still found); and
  the values of this process's own credential settings wherever they appear
  (`workers.core.known_secrets`).

Over-redaction is the side it errs on: a value whose end cannot be told (an unclosed or
oddly escaped string) is hidden up to the end of its line.
"""

import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Any

from django.utils.html import format_html

from workers.core.known_secrets import setting_secrets
from workers.core.task_registry import project_task

REDACTED = "[redacted]"
#: In an edit's audit diff: a hidden value the edit changed (what it became stays hidden).
REDACTED_CHANGED = "[redacted, changed]"

# --- keys ---------------------------------------------------------------------------------
# A key is split into words (`newPassword`, `X-Api-Key`, `SENTRY_DSN`: new/password,
# x/api/key, sentry/dsn). It names a secret when:
#: any word contains one of these (`csrftoken` and `authtoken` end in token, glued forms);
_SECRET_WITHIN = ("password", "passwd", "passphrase", "passcode", "secret", "credential",
                  "cookie", "apikey", "privatekey", "accesskey", "secretkey", "refreshkey",
                  "sessionid", "sessionkey", "authkey", "signature", "bearer", "jwt")
#: a word ends in "token" (`access_token`, `csrftoken`; not `max_tokens`, a count);
_TOKEN_SUFFIX = "token"  # noqa: S105  # a word to look for, not a credential
#: a word is one of these short names (whole words only: `auth` but never `author`,
#: `pin` but never `spin` or `pinned`, `pan` but never `company`);
_SECRET_WORDS = frozenset({
    "auth", "authorization", "pass", "pw", "pwd", "pin", "pincode", "otp", "totp", "hotp", "mfa",
    "session", "card", "cardnumber", "creditcard", "cvc", "cvv", "pan", "iban", "ssn", "dsn",
    "sig", "creds", "jwk"})
#: or "key" follows one of these (`api_key`, `private_key`, `access_key`, `client_key`;
#: never a bare `key`, `dedup_key` or `idempotency_key`, which are ids).
_KEY_QUALIFIERS = frozenset({
    "api", "private", "secret", "access", "refresh", "signing", "encryption", "master",
    "license", "client", "session", "auth", "ssh", "webhook", "stripe"})
_KEY_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


@lru_cache(maxsize=4096)
def sensitive_key(key: str) -> bool:
    """Whether a value under this key (or of a parameter of this name) is a secret."""
    lowered = key.lower()
    if any(word in lowered for word in _SECRET_WITHIN):
        return True
    words = [word.lower() for word in _KEY_WORD.findall(key)]
    if any(word in _SECRET_WORDS or word.endswith(_TOKEN_SUFFIX) for word in words):
        return True
    return any(word in ("key", "keys") and before in _KEY_QUALIFIERS
               for before, word in pairwise(words))


# --- values that look like secrets ----------------------------------------------------------
# One pass over the text: each shape is a named alternative, replaced as `_shown_as` says.
_SECRET_SHAPES = {
    "pem": r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)"
           r"(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
    "stripe": r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{6,}",  # secret and restricted keys
    "webhook": r"\bwhsec_\w{6,}",  # Stripe's webhook signing secret
    "bearer": r"\b(?i:bearer)\s+[\w\-.~+/]+=*",
    "basic": r"\bBasic\s+(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}",
    "jwt": r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*",
    "github": r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    "slack": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "aws": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "google": r"\bAIza[0-9A-Za-z_-]{35}",
    # scheme://user:password@host: the password (a DSN's user part names the key, stays)
    "url": r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@'\"]*:[^\s/?#@'\"]+@",
    "query_key": r"(?<=[?&;])key=[^&#\s'\"\\]{12,}",  # ?key=AIza…
    "card": r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w.-])",  # checked by Luhn below
}
_SECRET_SHAPE = re.compile("|".join(f"(?P<{name}>{pattern})"
                                    for name, pattern in _SECRET_SHAPES.items()))
# What every shape above contains: text without any of these is passed over at once (a
# log line, most messages), without trying each shape at each character.
_SECRET_SHAPE_HINT = re.compile(
    r"-----BEGIN|[sr]k_|whsec_|(?i:bearer)|Basic|eyJ|gh[pousr]_|xox|AKIA|ASIA|AIza|://|key="
    r"|\d(?:[ -]?\d){12}")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _shown_as(match: re.Match[str]) -> str:
    text, kind = match[0], match.lastgroup
    if kind in ("bearer", "basic"):
        return f"{text.split()[0]} {REDACTED}"
    if kind == "url":
        return f"{text[:text.index(':', text.index('://') + 3) + 1]}{REDACTED}@"
    if kind == "query_key":
        return f"key={REDACTED}"
    if kind == "card":
        digits = re.sub(r"[ -]", "", text)
        return REDACTED if 13 <= len(digits) <= 19 and _luhn_valid(digits) else text
    return REDACTED


def _hide_secret_values(text: str) -> str:
    return _SECRET_SHAPE.sub(_shown_as, text) if _SECRET_SHAPE_HINT.search(text) else text


# --- free text ----------------------------------------------------------------------------
# A key (bare, or quoted with its quote escaped any number of times: 'k', "k", \'k\',
# \\"k\\") and a separator (`:` or `=`, not `==`). Not inside a longer name, but right
# after an escaped newline or tab (`\npassword=`).
_KEYED = re.compile(
    r"""(?:(?<![\w.\\-])|(?<=\\[nrt]))"""
    r"""(?P<quote>\\*["']|)(?P<key>[A-Za-z_][\w.-]*)(?P=quote)"""
    r"""\s*(?::|=(?!=))[ \t]*""")
# A bare value: up to whitespace, a quote, a bracket or an escape (`\n` inside a repr).
_BARE_VALUE = re.compile(r"""(?:[^\s'"\\&<>(){}\[\]]|\\(?![nrt'"\\]))+""")
_SCHEMES = frozenset({"bearer", "basic", "token", "digest"})


def _string_end(text: str, start: int, escapes: int, quote: str) -> int:
    """The end of the quoted string opening at `start` (`escapes` backslashes, then `quote`).

    It closes at the same quote escaped the same number of times; a quote escaped more is
    inside it, one escaped less (or a raw newline) ends the text around it first.
    """
    index, size = start + escapes + 1, len(text)
    while index < size:
        char = text[index]
        if char == "\n":
            return index
        if char == "\\":
            run_start = index
            while index < size and text[index] == "\\":
                index += 1
            if index < size and text[index] == quote:
                run = index - run_start
                if run == escapes:
                    return index + 1
                if run < escapes:
                    return run_start
                index += 1
            continue
        if char == quote:
            return index + 1 if escapes == 0 else index
        index += 1
    return size


def _bracketed_end(text: str, start: int) -> int:
    """The end of the `{…}`, `[…]`, `(…)` or `<…>` opening at `start`, strings inside
    skipped."""
    depth, index, size = 0, start, len(text)
    while index < size:
        char = text[index]
        if char in "{[(<":
            depth += 1
        elif char in "}])>":
            depth -= 1
            if depth == 0:
                return index + 1
        elif char == "\n":
            return index
        elif char in "'\"\\":
            quote_at = index
            while quote_at < size and text[quote_at] == "\\":
                quote_at += 1
            if quote_at < size and text[quote_at] in "'\"":
                index = max(_string_end(text, index, quote_at - index, text[quote_at]),
                            index + 1)
            else:
                index = quote_at
            continue
        index += 1
    return size


def _hidden_value(text: str, start: int) -> tuple[str, int]:
    """What replaces the value starting at `start`, and where the value ends."""
    size = len(text)
    quote_at = start
    while quote_at < size and text[quote_at] == "\\":
        quote_at += 1
    if quote_at < size and text[quote_at] in "'\"":
        end = _string_end(text, start, quote_at - start, text[quote_at])
        opening = text[start:quote_at + 1]
        closed = end - start > len(opening) and text[end - 1] == text[quote_at]
        return f"{opening}{REDACTED}{opening if closed else ''}", end
    if start < size and text[start] in "{[(<":  # a dict, a list, an object's repr
        return REDACTED, _bracketed_end(text, start)
    bare = _BARE_VALUE.match(text, start)
    if bare is None:
        return "", start
    end = bare.end()
    if bare[0].lower() in _SCHEMES:  # "Authorization: Bearer abc": the credential too
        credential = re.compile(r"[ \t]+").match(text, end)
        if credential and (following := _BARE_VALUE.match(text, credential.end())):
            end = following.end()
    while end > start + 1 and text[end - 1] in ",.;:":  # "password=x, user=y"
        end -= 1
    return REDACTED, end


def redact_text(text: str) -> str:
    """Text with secrets hidden: the values of keys that name a secret, in any notation
    and at any depth of escaping, and every value that looks like a secret. For messages,
    tracebacks, raw message bodies and reprs.

    Short texts come back from a cache: a worker redacts every log line's values (a task's
    name, "[]", "{}", "None"), and its regular expressions cost microseconds a text. The
    cache is keyed by this process's secrets too, which a test may change."""
    if len(text) <= CACHED_TEXT:
        return _redacted_short(text, setting_secrets())
    return _redacted(text)


#: Texts up to this long are cached by `redact_text` (its cache holds at most 4,096).
CACHED_TEXT = 200


@lru_cache(maxsize=4096)
def _redacted_short(text: str, _secrets: tuple[str, ...]) -> str:
    return _redacted(text)


def _redacted(text: str) -> str:
    parts: list[str] = []
    position = 0
    keyed = ":" in text or "=" in text  # else no key can match: each ends with one of them
    while keyed and (match := _KEYED.search(text, position)) is not None:
        if not sensitive_key(match["key"]):
            parts.append(text[position:match.end()])
            position = match.end()  # the value is scanned too: it may hold a repr
            continue
        replacement, end = _hidden_value(text, match.end())
        parts.append(text[position:match.end()])
        parts.append(replacement)
        position = max(end, match.end())
    parts.append(text[position:])
    return _hide_setting_secrets(_hide_secret_values("".join(parts)))


def _hide_setting_secrets(text: str) -> str:
    """This process's own credentials, found by value (a server quoting the password it
    refused, a DSN in a message)."""
    return hide_values(text, setting_secrets())


# --- structured values ----------------------------------------------------------------------
def redact(value: Any) -> Any:
    """A copy of `value` with the values of secret-naming keys replaced at any depth, and
    `redact_text` applied to every string (a string may hold a repr or a header)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: REDACTED if sensitive_key(str(key)) else redact(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def redact_everywhere(value: Any) -> Any:
    """`redact`: for reports whose values may be reprs of objects holding arguments
    (Sentry's local variables). Kept as the name Sentry's scrubber calls."""
    return redact(value)


def redact_call(*, task_name: str, args: Sequence[Any] | None,
                kwargs: Mapping[str, Any] | None) -> tuple[list[Any], dict[str, Any]]:
    """A task call as people may see it: each positional argument named by the task's
    signature and hidden whole if that name is a secret's (`login("ann", "hunter2")`
    shows `["ann", "[redacted]"]`), the keyword arguments by their keys, and secret-looking
    values anywhere. A task this process cannot find (removed, renamed, or not among the
    modules it imports) has no names for its positional arguments: every string in them
    is hidden, since any might be the password."""
    args = list(args or ())
    if not args:  # nothing to name: a call by keywords only needs no task looked up
        return [], redact(dict(kwargs or {}))
    names = _parameter_names(task_name, len(args))
    if names is None:
        return [redact(_strings_hidden(value)) for value in args], redact(dict(kwargs or {}))
    shown = [REDACTED if name is not None and sensitive_key(name) else redact(value)
             for name, value in zip(names, args, strict=True)]
    return shown, redact(dict(kwargs or {}))


def _strings_hidden(value: Any) -> Any:
    if isinstance(value, str):
        return REDACTED
    if isinstance(value, Mapping):
        return {key: _strings_hidden(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strings_hidden(item) for item in value]
    return value


def call_secrets(*, task_name: str, args: Sequence[Any] | None,
                 kwargs: Mapping[str, Any] | None, discover: bool = False) -> tuple[str, ...]:
    """The strings a task call holds under a secret's name (a `password` parameter, an
    `api_key` key at any depth), longest first: what `hide_values` takes out of the
    call's error messages and log lines, where they turn up with no name beside them
    (`f"login refused for {user} using {password}"`). A task this process cannot find
    has no names for its positional arguments: every string in them counts, as in
    `redact_call`. A worker knows its own tasks and must not import modules again
    (`project_task`); a web process showing a stored call passes `discover`."""
    args = list(args or ())
    names = _parameter_names(task_name, len(args), discover=discover)
    if names is None:
        found = _strings_within(args)
    else:
        found = [value for name, value in zip(names, args, strict=True)
                 for value in (_strings_within(value)
                               if name is not None and sensitive_key(name)
                               else _named_secrets(value))]
    found += _named_secrets(dict(kwargs or {}))
    return tuple(sorted({form for value in found if len(value) >= MIN_WORD_SECRET
                         for form in _written_forms(value)}, key=len, reverse=True))


def _written_forms(value: str) -> set[str]:
    """The value as a message may hold it: itself, and as a repr or JSON writes it inside
    its quotes (`back\\slash` for `back\\slash`), once or twice over (a repr of an exception
    whose message holds a repr: Celery's "Retry in 6s: TransientError('…')")."""
    forms = {value}
    for _ in range(2):
        forms |= {written for form in forms
                  for written in (repr(form)[1:-1], json.dumps(form)[1:-1])}
    return forms


#: Shorter values are hidden only where they stand alone: masking "1234" wherever it
#: occurs would blank out parts of other numbers and words.
MIN_CALL_SECRET = 5
#: Shorter still are left in the text: a one- or two-character secret is no secret.
MIN_WORD_SECRET = 3


def _named_secrets(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [found for key, item in value.items()
                for found in (_strings_within(item) if sensitive_key(str(key))
                              else _named_secrets(item))]
    if isinstance(value, list | tuple):
        return [found for item in value for found in _named_secrets(item)]
    return []


def _strings_within(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [found for item in value.values() for found in _strings_within(item)]
    if isinstance(value, list | tuple):
        return [found for item in value for found in _strings_within(item)]
    return [str(value)] if isinstance(value, int | float) and not isinstance(value, bool) \
        else []


# Control characters (but a newline and a tab) and the bidirectional formatting ones, which
# make a page show text other than what it holds ("rtl" drawn as "ltr").
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f"
                        "\u2028-\u202e\u2060-\u2069\ufeff]")


def visible_text(text: str) -> str:
    """`text` with the characters that hide or reorder what a person reads written out as
    escapes (`\\u202e`): for error messages shown on a page."""
    return _INVISIBLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def visible_line(text: str) -> str:
    """`text` as one line of what it holds: `visible_text`, with newlines and tabs written
    out too, for a stored value (a task id, a name) printed inside a line of its own."""
    return visible_text(text).replace("\n", "\\n").replace("\t", "\\t")


def hide_values(text: str, values: Sequence[str]) -> str:
    """`text` with each of `values` (longest first) replaced by the redaction mark; one
    shorter than MIN_CALL_SECRET (a PIN) only where it stands alone, not inside a longer
    word or number."""
    for value in values:
        if value not in text:
            continue
        if len(value) >= MIN_CALL_SECRET:
            text = text.replace(value, REDACTED)
        else:
            text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", REDACTED, text)
    return text


def _parameter_names(task_name: str, count: int, *,
                     discover: bool = True) -> list[str | None] | None:
    """The parameter each of `count` positional arguments binds to (None past the end);
    None for a task this process cannot find."""
    try:
        task = project_task(task_name, discover=discover) if task_name else None
        if task is None and task_name:
            return None
        positional, rest = _positional_parameters(task.run) if task is not None else ((), None)
    except Exception:  # an app whose tasks do not import: the names are unknown
        positional, rest = (), None
    names: list[str | None] = list(positional[:count])
    names += [rest] * (count - len(names))
    return names


@lru_cache(maxsize=1024)
def _positional_parameters(run: Callable[..., Any]) -> tuple[tuple[str, ...], str | None]:
    """The names positional arguments bind to, in order, and that of `*args` if any."""
    try:
        parameters = inspect.signature(run).parameters.values()
    except (TypeError, ValueError):
        return (), None
    positional = tuple(parameter.name for parameter in parameters if parameter.kind in (
        parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD))
    rest = next((parameter.name for parameter in parameters
                 if parameter.kind == parameter.VAR_POSITIONAL), None)
    return positional, rest


# --- HTML ---------------------------------------------------------------------------------
def payload_html(*, task_name: str, args: list[Any], kwargs: dict[str, Any],
                 redacted: bool = True) -> str:
    """Arguments as the admin shows them: pretty JSON, secrets redacted (`redact_call`)
    unless the caller (audited, permitted) asks otherwise."""
    if redacted:
        args, kwargs = redact_call(task_name=task_name, args=args, kwargs=kwargs)
    return json_html({"args": args, "kwargs": kwargs})


def json_html(value: Any) -> str:
    """A JSON value as the admin shows it (pretty, escaped); redact it first."""
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2))


def text_html(text: str) -> str:
    """A message or traceback as the admin shows it, redacted, nothing in it hidden."""
    return format_html("<pre>{}</pre>", visible_text(redact_text(text)))
