"""The `CELERY_*` Django settings as a plain dict: what the Celery app is configured from.

Celery looks a setting up each time it uses one, and `send_task` alone reads several per
message. Read through Django's lazy settings object, each lookup tries the prefixed and the
plain name and pays an exception for every miss (about 30 µs on a busy 2-core machine,
a quarter of publishing a message); a dict answers in a few. The module is imported when
Celery first reads its configuration, so the settings are read once, after Django's are
loaded; to change one at run time (a test), change `app.conf`, as Celery documents.
"""

from django.conf import settings

SETTINGS = {name: getattr(settings, name) for name in dir(settings)
            if name.startswith("CELERY_")}
