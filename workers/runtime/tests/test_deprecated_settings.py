"""A worker's start warns of the settings that are deprecated, not of the Django-style
names of current ones (workers/runtime/deprecated_settings.py)."""

from celery import Celery

from config.celery import app
from tests.fixtures import wait_for
from workers.runtime.deprecated_settings import forget_namespaced_names


def test_the_apps_settings_are_current_under_its_namespace():
    assert app.conf.deprecated_settings == set()
    assert app.conf.maybe_warn_deprecated_settings() is False


def test_an_old_name_the_namespace_does_not_make_current_is_still_warned_of():
    other = Celery("other", set_as_current=False)
    other.config_from_object({"CELERY_TASK_SERIALIZER": "json", "CELERY_TIMEZONE": "UTC",
                              "CELERY_ALWAYS_EAGER": False}, namespace="CELERY")
    other.on_after_configure.connect(
        lambda sender, source, **kwargs: forget_namespaced_names(source), weak=False)

    assert other.conf.deprecated_settings == {"CELERY_ALWAYS_EAGER"}
    assert other.conf.task_serializer == "json"


def test_a_worker_starts_without_deprecation_warnings(celery_process):
    log = celery_process("worker")
    wait_for(lambda: " ready." in log.read_text(), what="the worker to start")
    started = log.read_text()
    assert "CDeprecationWarning" not in started
    assert "celery upgrade settings" not in started
