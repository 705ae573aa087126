"""Production refuses the secrets every clone of this repository knows.

`make dev` copies `.env.example` to `.env`, and both Django (config/settings/) and
`docker compose` read that file. Without these checks a production process started in such
a checkout signs sessions with a public key, accepts Stripe events signed with the secret
the README prints and opens Flower to `admin:admin-dev`. Settings call them when
DJANGO_ENV=production, so the process stops at start-up with one line naming the variable.

The values are listed here, not read from `.env.example` at start-up (the file is a
template a team edits, and an image need not ship it); tests/test_settings.py holds the
list to every secret-like line of `.env.example`.
"""

from collections.abc import Mapping

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

#: The key settings fall back to when DJANGO_ENV is dev or test and SECRET_KEY is unset.
LOCAL_SECRET_KEY = "insecure-local-only-key-never-used-in-production"  # noqa: S105 (public)

#: Every development value `.env.example` ships for a secret, by variable.
DEV_VALUES: dict[str, frozenset[str]] = {
    "SECRET_KEY": frozenset({"dev-only-secret-key-change-me", LOCAL_SECRET_KEY}),
    "BILLING_WEBHOOK_SECRET": frozenset({"whsec_dev_only_secret"}),
    "ANALYTICS_INGEST_TOKEN": frozenset({"dev-ingest-token"}),
    "METRICS_TOKEN": frozenset({"metrics-dev-token"}),
    "FLOWER_BASIC_AUTH": frozenset({"admin:admin-dev"}),
    "DEV_SUPERUSER_PASSWORD": frozenset({"admin-dev"}),
}


def refuse_dev_values(values: Mapping[str, str]) -> None:
    """Raise if a variable holds a development value (alone or as one of a comma list,
    as FLOWER_BASIC_AUTH's `user:password,user:password`)."""
    for name, value in values.items():
        if {value, *value.split(",")} & DEV_VALUES.get(name, frozenset()):
            raise ImproperlyConfigured(
                f"{name} is the development value from .env.example: set a secret of your "
                "own (or unset it) for DJANGO_ENV=production")


def refuse_weak_secret_key(key: str) -> None:
    """Raise for a key Django's deploy check (security.W009) calls weak: a key that is short,
    repetitive or Django's placeholder makes signed sessions and tokens guessable."""
    if (len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
            or key.startswith(SECRET_KEY_INSECURE_PREFIX)):
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak for DJANGO_ENV=production: use at least "
            f"{SECRET_KEY_MIN_LENGTH} random characters, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'")
