"""Celery's warning of deprecated settings, kept to the settings that are deprecated.

A worker starting warns of every configuration key that is also an old (Celery 3) name,
and `CELERY_TASK_SERIALIZER`, the Django-style name of `task_serializer`, is one: read
under the app's "CELERY" namespace it is the current setting, yet each worker logged
eleven CDeprecationWarnings and told the operator to run `celery upgrade settings`, which
changes nothing. Celery skips the warning when the configuration source is the string
'django.conf:settings' (celery/celery#6366); the app reads the same settings from a dict
(config/celery_conf.py), so it warned. Here an old name is dropped from the warning when
the namespace makes it a current setting; one that stays old (`CELERY_ALWAYS_EAGER`,
which the namespace reads as no setting at all) is still warned of. The names used are
checked by workers/runtime/tests/test_celery_internals.py.
"""

from typing import Any

from celery.app.defaults import SETTING_KEYS

NAMESPACE = "CELERY_"


def forget_namespaced_names(source: Any) -> None:
    """Drop from `source`'s deprecated settings the names its namespace reads as current."""
    deprecated = source.deprecated_settings
    if deprecated:
        source.deprecated_settings = {
            name for name in deprecated
            if name.removeprefix(NAMESPACE).lower() not in SETTING_KEYS}
