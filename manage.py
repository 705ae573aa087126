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
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
