"""Secrets kept out of the configuration a worker reports: `celery inspect conf` (what
Flower's worker Config tab shows), `celery inspect report` and `celery report`.

The app is configured from the `CELERY_*` settings (config/celery_conf.py), all of them in
the table those commands send over the broker to whoever asks. Celery masks keys that name
a secret (API, TOKEN, KEY, SECRET, PASS, SIGNATURE, DATABASE) and the password of the
broker and backend URLs under their Celery names, but not CELERY_BROKER_URL or a
credential in any other `CELERY_*` value. `install()` puts a
stricter filter where Celery's `Settings.table()` looks its filter up: Celery's own first,
then keys naming a credential masked whole, and the credentials of any URL in any value.
The private name is checked by workers/runtime/tests/test_celery_internals.py.
"""

import re
from collections.abc import Mapping
from typing import Any

from celery.app import utils as celery_app_utils

MASK = "*" * 8  # Celery's own
#: Keys whose whole value is a credential, beyond Celery's HIDDEN_SETTINGS: a login
#: (FLOWER_BASIC_AUTH), a DSN (its key is the user part), a webhook URL (the path is it).
SECRET_KEYS = re.compile("AUTH|DSN|WEBHOOK|CREDENTIAL|PRIVATE", re.IGNORECASE)
#: scheme://user:password@ and scheme://user@ anywhere in a string (a failover list too).
URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^\s:/?#@]*)(?P<password>:[^\s/?#]*)?@",
    re.IGNORECASE)

CELERY_FILTER = celery_app_utils.filter_hidden_settings


def install() -> None:
    """Censor every configuration table this process reports (idempotent)."""
    celery_app_utils.filter_hidden_settings = censor_settings


def censor_settings(conf: Mapping[str, Any]) -> dict[str, Any]:
    """`conf` as Celery censors it, then with what Celery's mask lets through masked."""
    return {key: _censor(key, value) for key, value in CELERY_FILTER(dict(conf)).items()}


def _censor(key: object, value: Any) -> Any:
    if isinstance(key, str) and SECRET_KEYS.search(key):
        return MASK
    if isinstance(value, Mapping):
        return {inner: _censor(inner, item) for inner, item in value.items()}
    if isinstance(value, list | tuple):
        return [_censor(None, item) for item in value]
    if isinstance(value, str):
        return URL_CREDENTIALS.sub(_mask_credentials, value)
    return value


def _mask_credentials(match: re.Match[str]) -> str:
    """The password masked, the user kept; a user part alone is masked (a DSN's key)."""
    if match["password"] is None:
        return f"{match['scheme']}{MASK}@"
    return f"{match['scheme']}{match['user']}:{MASK}@"
