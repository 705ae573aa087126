"""The Celery application: reads `CELERY_*` Django settings and finds each app's tasks."""

import os

from celery import Celery

from workers.runtime import install

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# The message builder redacts the argument reprs each message carries (Flower shows them).
app = Celery("config", task_cls="workers.core.base:PlatformTask",
             amqp="workers.runtime.task_messages:RedactingAMQP")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # each installed app's tasks.py
# The platform's tasks live beside the code they run, in subpackages of the workers app.
app.autodiscover_tasks(["workers.core", "workers.dead_letters", "workers.ops",
                        "workers.ops.alerts"])
install(app)
