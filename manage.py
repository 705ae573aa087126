#!/usr/bin/env python
"""Django's command-line entry point."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    # Importing `config` loads the Celery app, which prints a refused setting in one line.
    from config.startup import settings_read

    settings_read()
    try:
        execute_from_command_line(sys.argv)
        sys.stdout.flush()  # here, not at exit, where a closed reader is only "ignored"
    except BrokenPipeError:
        # The reader went away (`manage.py dlq list | head`): stop quietly, as Unix tools
        # do, and point stdout at nothing so the interpreter's own flush at exit finds no
        # closed pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
