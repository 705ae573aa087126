"""Values known to be secret in this process, so what a person sees (an error report, a
dead letter's message, the console, a log line) can hide them wherever they turn up,
whatever variable, key or message carries them.

- The settings whose names end in a credential word (`SECRET_KEY`, `STRIPE_API_KEY`,
  `ANALYTICS_INGEST_TOKEN`, a database's `PASSWORD`...) and the password of any URL setting:
  a local variable called `given` or an f-string message is no longer a way out for them.
- The arguments of the task running now. With `send_default_pii` off, Sentry's Celery
  integration withholds them from the report; they must not come back through the task's
  local variables, Celery's reprs of its request (`argsrepr`) or a message. This is what
  hides a positional argument, which has no key to match.

Strings shorter than MIN_LENGTH are left alone: masking `"pro"` or `"42"` wherever they occur
would blank out ordinary words, and a credential is longer than that.
"""

import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from celery import current_task
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

MIN_LENGTH = 8

# On the end of the name, unlike the key pattern for data: `AUTH_USER_MODEL`,
# `PASSWORD_HASHERS` and `CACHE_MIDDLEWARE_KEY_PREFIX` name features, not credentials.
_CREDENTIAL_SETTING = re.compile(
    r"(^|_)(SECRET|TOKEN|PASSWORD|PASSWD|PASS|KEY|SIGNATURE|AUTH|CREDENTIALS|DSN)(_FALLBACKS)?$",
    re.IGNORECASE,
)


def known_secrets() -> tuple[str, ...]:
    """Every known secret value, longest first (so a secret that contains another is
    masked whole)."""
    return _longest_first((*setting_secrets(), *_running_task_arguments()))


@lru_cache(maxsize=1)
def setting_secrets() -> tuple[str, ...]:
    """The secret values of this process's settings, longest first: `redact_text` hides
    them in any text, which is how an SMTP server that quotes the password it refused does
    not show it on the console. Computed once (settings do not change while a process
    runs; a test that changes them clears this)."""
    return _longest_first(_secret_settings())


@receiver(setting_changed)
def _forget_setting_secrets(**_: Any) -> None:
    setting_secrets.cache_clear()


def _longest_first(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({value for value in values if len(value) >= MIN_LENGTH},
                        key=len, reverse=True))


def _secret_settings() -> Iterator[str]:
    if not settings.configured:
        return
    for name in dir(settings):
        if name.isupper():
            yield from _secrets_in_setting(name, getattr(settings, name, None))


def _secrets_in_setting(name: str, value: Any) -> Iterator[str]:
    if _CREDENTIAL_SETTING.search(name):
        yield from _strings(value)
    elif isinstance(value, dict):  # DATABASES["default"]["PASSWORD"], CACHES, ...
        for key, item in value.items():
            yield from _secrets_in_setting(str(key), item)
    elif isinstance(value, str) and "://" in value:
        try:
            password = urlsplit(value).password
        except ValueError:  # not a URL after all
            password = None
        if password:
            yield password


def _running_task_arguments() -> Iterator[str]:
    if not current_task:  # a proxy: false outside a task
        return
    request = current_task.request
    yield from _strings(request.args or ())
    yield from _strings(request.kwargs or {})


def _strings(value: Any) -> Iterator[str]:
    """The strings inside `value`, at any depth (the values of a dict, not its keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)
