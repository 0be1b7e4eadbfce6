"""Django's createsuperuser, holding a password given in DJANGO_SUPERUSER_PASSWORD (--noinput)
to the password validators as register does: Django checks only a password typed at its prompt
(and lets the operator bypass them there, which UserManager.create_superuser refuses). The email
and the full name are checked by the model's field validators, in both modes."""

import os

from django.contrib.auth.management.commands import createsuperuser
from django.core.exceptions import ValidationError
from django.core.management import CommandError

PASSWORD_REFUSED = "DJANGO_SUPERUSER_PASSWORD is refused: {reasons}"  # noqa: S105 - a message


class Command(createsuperuser.Command):
    def handle(self, *args, **options):
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if not options["interactive"] and password is not None:
            self._password_check(password, options)
        return super().handle(*args, **options)

    def _password_check(self, password: str, options: dict) -> None:
        # Before anything else, and by the variable's name (an empty one included, which
        # Django would quietly take for no password).
        try:
            self.UserModel._default_manager.password_check(
                password,
                email=self._given("email", options),
                full_name=self._given("full_name", options),
            )
        except ValidationError as error:
            reasons = " ".join(error.messages)
            raise CommandError(PASSWORD_REFUSED.format(reasons=reasons)) from None

    @staticmethod
    def _given(field: str, options: dict) -> str:
        """The value the command will use: its option, else its environment variable."""
        return options.get(field) or os.environ.get(f"DJANGO_SUPERUSER_{field.upper()}") or ""
