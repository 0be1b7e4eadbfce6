"""JWT sessions: issue pairs, rotate refresh tokens once, revoke them.

simplejwt's token classes do the signing and claim checks; this module adds the one thing its
views lack: rotation and logout that succeed exactly once per refresh token, even when two
requests race with the same token (the blacklist row's unique key decides the winner).
"""

from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch, get_md5_hash_password

from accounts.models import User
from auth_service.exceptions import TokenInvalid


def token_pair_for(*, user: User) -> dict[str, str]:
    """A new access + refresh pair; the refresh token is recorded as outstanding."""
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def refresh_token_parse(*, raw: str) -> tuple[RefreshToken, User]:
    """Verify a refresh token (signature, expiry, type, audience, blacklist) and load its user."""
    try:
        token = RefreshToken(raw)
    except TokenError:
        raise TokenInvalid() from None
    user = User.objects.filter(pk=token.get(api_settings.USER_ID_CLAIM), is_active=True).first()
    if user is None:
        raise TokenInvalid()
    if token.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
        raise TokenInvalid()
    return token, user


def refresh_token_consume(*, token: RefreshToken, user: User) -> None:
    """Blacklist the token; raise TokenInvalid if another request already did."""
    with transaction.atomic():
        outstanding, _ = OutstandingToken.objects.get_or_create(
            jti=token[api_settings.JTI_CLAIM],
            defaults={
                "user": user,
                "token": str(token),
                "created_at": timezone.now(),
                "expires_at": datetime_from_epoch(token["exp"]),
            },
        )
        _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
    if not created:
        raise TokenInvalid()


def user_tokens_revoke(*, user: User) -> int:
    """Blacklist every unexpired refresh token the user holds; returns how many."""
    live = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    ).only("id")
    rows = [BlacklistedToken(token=token) for token in live]
    BlacklistedToken.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
