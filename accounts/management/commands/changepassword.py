"""Django's changepassword, finding the user by email in any spelling: lower-cased, its domain
in either form ("bücher.example" or "xn--bcher-kva.example"), as sign-in does."""

from django.contrib.auth.management.commands import changepassword

from accounts.managers import normalize_email


class Command(changepassword.Command):
    def handle(self, *args, **options):
        if options["username"]:
            options["username"] = normalize_email(options["username"])
        return super().handle(*args, **options)
