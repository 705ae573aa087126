#!/usr/bin/env python
"""Django's command-line entry point."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    from config.startup import configuration_errors_in_one_line, settings_read

    configuration_errors_in_one_line()
    settings_read()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
