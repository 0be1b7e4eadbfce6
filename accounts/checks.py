"""Deployment checks for account security settings (run by ``manage.py check --deploy``)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def jwt_signing_key_check(app_configs, **kwargs):
    """JWTs should be signed with their own key, so each secret can be rotated alone."""
    if settings.SIMPLE_JWT["SIGNING_KEY"] == settings.SECRET_KEY:
        return [
            Warning(
                "JWTs are signed with SECRET_KEY.",
                hint="Set JWT_SIGNING_KEY to its own long random value.",
                id="accounts.W001",
            )
        ]
    return []
