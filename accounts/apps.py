from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from accounts import (
            checks,  # noqa: F401 - registers the deployment checks
            signals,  # noqa: F401 - connects the receivers
        )
