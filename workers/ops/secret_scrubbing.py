"""Secrets hidden inside the values an error report carries: free text, nested data, query
strings, a command line, and a log call's template and parameters.

`workers.core.redaction` does most of it (keys that name a secret, in data and in text at
any depth of escaping, and values shaped like secrets). This adds what only a report brings:

- names: frame locals that carry a credential without saying so (`given`, `header`), and
  where Celery and logging keep a call's arguments (`args`, `kwargs`, `argsrepr`,
  `kwargsrepr`, `params`), which have no keys of their own;
- query parameters with short credential names (`?key=`, `?sig=`, OAuth's `?code=`);
- a log template's own words: in `"refused api key %s"` the parameter is a secret;
- `known`: the values `workers.core.known_secrets` knows are secret, wherever they appear.

Nothing here knows where in an event a value sits: `workers.ops.sentry` decides that.
"""

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_plus

from workers.core.redaction import REDACTED, redact, redact_text

#: Whole names. `given`: what a caller presented to a credential check (the ingest view's
#: bearer token); `header(s)`: whatever request headers a frame holds; the rest: where
#: Celery and logging hold a call's arguments.
EXACT_NAMES = frozenset({"given", "header", "headers",
                         "args", "kwargs", "argsrepr", "kwargsrepr", "params"})
_QUERY_CREDENTIAL = re.compile(r"key|sig|code", re.IGNORECASE)
_QUERY_PARAMETER = re.compile(r"""(?P<head>[?&](?P<name>[^=&#\s'"]+)=)(?P<value>[^&#\s'"]*)""")
# A %-style placeholder, as logging formats them.
_PLACEHOLDER = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0 +-]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?"
    r"[hlL]?(?P<conversion>[diouxXeEfFgGcrsa%])")
_WORD = re.compile(r"[A-Za-z0-9]+")
_PROBE = object()


def is_sensitive_name(name: str) -> bool:
    """Whether a key, header, variable or option of this name holds a secret: the rule
    `redact` applies to keys (asked, not copied, so both change together), or one of
    EXACT_NAMES."""
    return redact({name: _PROBE})[name] is not _PROBE or name.lower() in EXACT_NAMES


def scrub_text(text: str, *, known: Sequence[str] = ()) -> str:
    """`text` with the known secrets, sensitive query parameters and whatever
    `redact_text` finds replaced."""
    for secret in known:
        text = text.replace(secret, REDACTED)
    return redact_text(_QUERY_PARAMETER.sub(_hide_query_value, text))


def _hide_query_value(match: re.Match[str]) -> str:
    name = unquote_plus(match["name"])
    if is_sensitive_name(name) or _QUERY_CREDENTIAL.fullmatch(name):
        return f"{match['head']}{REDACTED}"
    return match[0]


def scrub_query_string(query: str, *, known: Sequence[str] = ()) -> str:
    """A query string without its `?` (`api_key=...&page=2`), sensitive values replaced."""
    return scrub_text(f"?{query}", known=known)[1:]


def scrub_data(value: Any, *, known: Sequence[str] = ()) -> Any:
    """A copy of `value` with the values of sensitive names replaced and every string
    scrubbed, at any depth."""
    if isinstance(value, str):
        return scrub_text(value, known=known)
    if isinstance(value, dict):
        return {key: REDACTED if is_sensitive_name(str(key)) else scrub_data(item, known=known)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_data(item, known=known) for item in value]
    return value


def scrub_command_line(argv: Sequence[Any], *, known: Sequence[str] = ()) -> list[Any]:
    """`sys.argv` with the values of sensitive options replaced, in either spelling
    (`--basic-auth=user:pass`, `--password secret`)."""
    scrubbed: list[Any] = []
    hide_next = False
    for arg in argv:
        if hide_next and isinstance(arg, str) and not arg.startswith("-"):
            scrubbed.append(REDACTED)
            hide_next = False
            continue
        if not isinstance(arg, str):
            scrubbed.append(arg)
            continue
        name, equals, _ = arg.partition("=")
        sensitive_option = arg.startswith("-") and is_sensitive_name(name.lstrip("-"))
        hide_next = sensitive_option and not equals
        scrubbed.append(f"{name}={REDACTED}" if sensitive_option and equals
                        else scrub_text(arg, known=known))
    return scrubbed


def scrub_log_entry(entry: dict[str, Any], *, known: Sequence[str] = ()) -> dict[str, Any]:
    """A log call as Sentry records it (`message`: the template, `params`, `formatted`),
    with the parameters its template labels as secrets replaced (`"api key %s"`), the
    others scrubbed like any data, and `formatted` rid of every value that changed."""
    template, params = entry.get("message"), entry.get("params")
    labelled = labelled_parameters(template) if isinstance(template, str) else set()
    if isinstance(params, dict):
        scrubbed_params: Any = {key: REDACTED if key in labelled else item
                                for key, item in scrub_data(params, known=known).items()}
        pairs = [(params[key], scrubbed_params[key]) for key in params]
    elif isinstance(params, list | tuple):
        scrubbed_params = [REDACTED if index in labelled else scrub_data(item, known=known)
                           for index, item in enumerate(params)]
        pairs = list(zip(params, scrubbed_params, strict=True))
    else:
        scrubbed_params, pairs = params, []
    scrubbed = dict(entry)
    if isinstance(template, str):
        scrubbed["message"] = scrub_text(template, known=known)
    if params is not None:
        scrubbed["params"] = scrubbed_params
    formatted = entry.get("formatted")
    if isinstance(formatted, str):
        for original, replacement in pairs:
            if isinstance(original, str) and original and original != replacement:
                formatted = formatted.replace(
                    original, replacement if isinstance(replacement, str) else REDACTED)
        scrubbed["formatted"] = scrub_text(formatted, known=known)
    return scrubbed


def labelled_parameters(template: str) -> set[int | str]:
    """Positions (or names, for `%(name)s`) of the parameters whose placeholder follows a
    sensitive word: `"token %s"`, `"password=%r"`, `"api key: %s"` (the last two words
    before it are read as one name, `api_key`)."""
    labelled: set[int | str] = set()
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        if match["conversion"] == "%":
            continue
        position += [match["width"], match["precision"]].count("*")  # `%*d` takes two
        key: int | str = match["name"] if match["name"] is not None else position
        if is_sensitive_name("_".join(_WORD.findall(template[:match.start()])[-2:])):
            labelled.add(key)
        if match["name"] is None:
            position += 1
    return labelled
