"""The Celery application: reads `CELERY_*` Django settings and finds each app's tasks."""

import os

from celery import Celery

from workers.runtime import install

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# The message builder redacts the argument reprs each message carries (Flower shows them).
app = Celery("config", task_cls="workers.api.base:PlatformTask",
             amqp="workers.runtime.task_messages:RedactingAMQP")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
install(app)
