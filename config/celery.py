"""The Celery application: reads `CELERY_*` Django settings and finds each app's tasks."""

import os

from celery import Celery

from config.startup import configuration_errors_in_one_line
from workers.runtime import install

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
configuration_errors_in_one_line()  # for the settings read below and by Celery's CLI

# The platform's tasks live beside the code they run, in subpackages of the workers app,
# where Django's app list does not lead autodiscovery (tests/test_task_names.py holds this
# list equal to the `workers/**/tasks.py` modules there are).
PLATFORM_TASK_PACKAGES = ["workers.core", "workers.dead_letters", "workers.ops",
                          "workers.ops.alerts"]

# The message builder redacts the argument reprs each message carries (Flower shows them).
app = Celery("config", task_cls="workers.core.base:PlatformTask",
             amqp="workers.runtime.task_messages:RedactingAMQP")
app.config_from_object("config.celery_conf:SETTINGS", namespace="CELERY")
app.autodiscover_tasks()  # each installed app's tasks.py
app.autodiscover_tasks(PLATFORM_TASK_PACKAGES)
install(app)
