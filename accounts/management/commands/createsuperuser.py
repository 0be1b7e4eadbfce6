"""Django's createsuperuser, holding a password given in DJANGO_SUPERUSER_PASSWORD (--noinput)
to the password validators as register does: Django checks only a password typed at its prompt.
The email and the full name are checked by the model's field validators, in both modes."""

import os

from django.contrib.auth.management.commands import createsuperuser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import CommandError

from accounts.managers import normalize_email

PASSWORD_REFUSED = "DJANGO_SUPERUSER_PASSWORD is refused: {reasons}"  # noqa: S105 - a message


class Command(createsuperuser.Command):
    def handle(self, *args, **options):
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if not options["interactive"] and password is not None:
            self._password_check(password, options)
        return super().handle(*args, **options)

    def _password_check(self, password: str, options: dict) -> None:
        # The account as register builds it: the validators compare the password with the
        # email and the name.
        user = self.UserModel(
            email=normalize_email(self._given("email", options)),
            full_name=self._given("full_name", options),
        )
        try:
            validate_password(password, user=user)
        except ValidationError as error:
            reasons = " ".join(error.messages)
            raise CommandError(PASSWORD_REFUSED.format(reasons=reasons)) from None

    @staticmethod
    def _given(field: str, options: dict) -> str:
        """The value the command will use: its option, else its environment variable."""
        return options.get(field) or os.environ.get(f"DJANGO_SUPERUSER_{field.upper()}") or ""
