#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auth_service.settings")
    # Operators' commands (migrate, flushexpiredtokens) may rightly run long statements; the
    # web and worker processes keep the settings' bound.
    os.environ.setdefault("DB_STATEMENT_TIMEOUT", "0")
    # But a table lock they cannot get soon must not hold up the service's queries behind it.
    os.environ.setdefault("DB_LOCK_TIMEOUT", "3000")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
