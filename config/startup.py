"""What a command-line entry point (manage.py, the Celery app's CLI) sets first: a refused
setting stops the process with its reason alone."""

import sys
from types import TracebackType

from django.core.exceptions import ImproperlyConfigured


def configuration_errors_in_one_line() -> None:
    """Print an uncaught ImproperlyConfigured (a variable missing, or refused in
    production) as one line on stderr; the exit status stays 1.

    Django raises it from deep in the settings import, and as a traceback the reason was
    the last of some 40 lines. Only uncaught errors reach the hook: gunicorn, which catches
    its worker's import error itself, still logs it and stops as a failed boot.
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException,
             trace: TracebackType | None) -> None:
        if issubclass(kind, ImproperlyConfigured):
            sys.stderr.write(f"configuration error: {error}\n")
        else:
            previous(kind, error, trace)

    sys.excepthook = hook


def settings_read() -> None:
    """Read the settings now, for a command-line process: Django's management utility
    catches their ImproperlyConfigured and goes on, so `shell` ran code with the settings
    refused and `makemigrations` failed later on an unrelated error."""
    from django.conf import settings

    settings.INSTALLED_APPS  # noqa: B018 (reading one setting imports the module)
