"""Django settings, one module per concern; every knob comes from the environment and has
its line in `.env.example`.

Defaults are the safe ones: DEBUG off, secure cookies and HSTS on, SECRET_KEY required
unless DJANGO_ENV is `dev` or `test`; production refuses DEBUG, a weak SECRET_KEY and the
development secrets of `.env.example` (config/secret_checks.py). A local run with nothing
set uses SQLite and the Redis on localhost so a fresh clone works before anyone writes a
`.env`. Nothing here but reading the environment: no platform module is imported for its
side effects (Sentry starts in the workers app's `ready()`).

A module that needs another's value imports it by name (the Celery options follow the
platform's limits), so no module depends on the order of the imports below.
"""

from config.settings.apps import *  # noqa: F403
from config.settings.celery import *  # noqa: F403
from config.settings.django import *  # noqa: F403
from config.settings.environment import *  # noqa: F403
from config.settings.observability import *  # noqa: F403
from config.settings.workers import *  # noqa: F403
