"""Where settings come from: the environment, and the `.env` file beside manage.py for what
the environment does not set; and which kind of deployment this is (DJANGO_ENV)."""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))  # empty: read no file
if ENV_FILE:
    environ.Env.read_env(ENV_FILE, overwrite=False)  # the real environment wins

DJANGO_ENV = env.str("DJANGO_ENV", default="production")
if DJANGO_ENV not in {"dev", "test", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be dev, test or production, not {DJANGO_ENV!r}")
LOCAL = DJANGO_ENV in {"dev", "test"}


def positive_int(name: str, *, default: int) -> int:
    """An integer setting that must be at least 1: a count or a rate of 0 or below would
    make the work it sizes loop for ever or fail at its first use, not at start-up."""
    value = env.int(name, default=default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1, not {value}")
    return value
