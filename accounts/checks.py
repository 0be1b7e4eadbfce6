"""Deployment checks for account security settings (run by ``manage.py check --deploy``)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

# HS256 wants a key at least as long as its hash, 256 bits (RFC 7518, section 3.2); PyJWT warns
# below 32 bytes too. Render's generated values are 44 characters.
JWT_KEY_MIN_BYTES = 32


@register(Tags.security, deploy=True)
def jwt_signing_key_check(app_configs, **kwargs):
    """JWTs should be signed with their own key, so each secret can be rotated alone, and a
    long one: anyone holding a token can test guesses of the key offline."""
    key = settings.SIMPLE_JWT["SIGNING_KEY"]
    if key == settings.SECRET_KEY:
        return [
            Warning(
                "JWTs are signed with SECRET_KEY.",
                hint="Set JWT_SIGNING_KEY to its own long random value (this ends every session).",
                id="accounts.W001",
            )
        ]
    if len(key.encode()) < JWT_KEY_MIN_BYTES:
        return [
            Warning(
                f"JWT_SIGNING_KEY is shorter than {JWT_KEY_MIN_BYTES} bytes.",
                hint='Set it to a long random value: python -c "import secrets; '
                'print(secrets.token_urlsafe(50))" (this ends every session).',
                id="accounts.W002",
            )
        ]
    return []
