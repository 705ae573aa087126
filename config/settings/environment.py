"""Where settings come from: the environment, and the `.env` file beside manage.py for what
the environment does not set; and which kind of deployment this is (DJANGO_ENV)."""

from pathlib import Path
from urllib.parse import urlsplit

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


def url_setting(name: str, *, default: str = "", one_server: bool = False) -> str:
    """A URL setting (or a `;` failover list of them), refused at start-up when it cannot
    be read as one; with `one_server`, a list only of `sentinel://` URLs (a Redis client
    takes one server, or the Sentinels of one group).

    A `/`, `#` or `?` left in a password ends the URL's host part there: kombu and
    django-environ then fail on the rest as a port and print it (`Port could not be cast
    to integer value as 's3cr'`) in a traceback, in every process and log, or, when the
    rest is digits, connect elsewhere and show the password's end as the path; without
    its `//` the whole URL is read as a path and shown in errors. A `;` splits it into a
    failover list of broken URLs. The refusal names the setting, not its value."""
    value = env.str(name, default="") or default
    urls = value.split(";")
    for url in urls:
        try:
            split = urlsplit(url)
            split.port  # noqa: B018 (reading it is the check)
            host_cut_short = bool(split.netloc) and "@" in (split.path + split.query
                                                             + split.fragment)
            unreadable = (not split.scheme or not url.startswith(f"{split.scheme}://")
                          or host_cut_short or (len(urls) > 1 and not split.netloc))
        except ValueError:
            unreadable = True
        if unreadable:
            raise ImproperlyConfigured(
                f"{name} cannot be read as a URL: percent-encode / # ? @ : % in its user "
                "name and password (python -c \"import urllib.parse; "
                "print(urllib.parse.quote('the-password', safe=''))\")")
    if one_server and len(urls) > 1 and not all(url.startswith("sentinel://") for url in urls):
        raise ImproperlyConfigured(
            f"{name} lists several servers, which only sentinel:// URLs may (a Redis client "
            f"takes one): set {name} to one URL (it defaults to the broker's)")
    return value
