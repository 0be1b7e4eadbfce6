"""JWT sessions: issue pairs, rotate refresh tokens once, revoke them.

simplejwt's token classes do the signing and claim checks; this module adds the one thing its
views lack: rotation and logout that succeed exactly once per refresh token, even when two
requests race with the same token (the blacklist row's unique key decides the winner).
"""

from django.db import connection
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch, get_md5_hash_password

from accounts.models import User
from auth_service.exceptions import TokenInvalid

# What RefreshToken.for_user records, as one constant statement: the ORM's create() and a
# second encoding of the token were a fifth of a login's CPU besides the password hash.
_RECORD = """
INSERT INTO token_blacklist_outstandingtoken (user_id, jti, token, created_at, expires_at)
VALUES (%s, %s, %s, %s, %s)
"""


def token_pair_for(*, user: User) -> dict[str, str]:
    """A new access + refresh pair; the refresh token is recorded as outstanding."""
    refresh = _refresh_token(user_id=user.pk, digest=get_md5_hash_password(user.password))
    encoded = str(refresh)
    with connection.cursor() as cursor:
        cursor.execute(
            _RECORD,
            [
                user.pk,
                refresh[api_settings.JTI_CLAIM],
                encoded,
                refresh.current_time,
                datetime_from_epoch(refresh["exp"]),
            ],
        )
    return {"access": str(refresh.access_token), "refresh": encoded}


def _refresh_token(*, user_id: int, digest: str | None) -> RefreshToken:
    """The claims RefreshToken.for_user sets: the user's id and their password's digest."""
    token = RefreshToken()
    token[api_settings.USER_ID_CLAIM] = str(user_id)
    token[api_settings.REVOKE_TOKEN_CLAIM] = digest
    return token


class _PresentedRefreshToken(RefreshToken):
    """A refresh token sent by a client, verified without simplejwt's blacklist lookup.

    Every caller goes on to refresh_token_consume or _ROTATE, whose single statement refuses a
    revoked token atomically; a separate lookup first would only add a query to each refresh.
    """

    def check_blacklist(self) -> None:
        pass


# Revoke the outstanding token with this jti unless it already is; a row back means this
# request is the one that revoked it. Under concurrency the unique key on token_id makes every
# other request wait for the winner's commit and then insert nothing.
_CONSUME = """
INSERT INTO token_blacklist_blacklistedtoken (token_id, blacklisted_at)
SELECT id, %s FROM token_blacklist_outstandingtoken WHERE jti = %s
ON CONFLICT (token_id) DO NOTHING
RETURNING id
"""


# Rotation in one statement, so a refresh costs one round trip and one commit: the presented
# token is consumed only while its user is active with the password it was issued under (its
# digest claim is the hex md5 of the password hash, which PostgreSQL's md5() computes), and its
# successor is recorded as outstanding only if this request is the one that consumed it.
_ROTATE = """
WITH holder AS (
    SELECT id FROM accounts_user
    WHERE id = %(user_id)s AND is_active AND md5(password) = lower(%(digest)s)
), consumed AS (
    INSERT INTO token_blacklist_blacklistedtoken (token_id, blacklisted_at)
    SELECT outstanding.id, %(now)s
    FROM token_blacklist_outstandingtoken outstanding JOIN holder ON holder.id = outstanding.user_id
    WHERE outstanding.jti = %(jti)s
    ON CONFLICT (token_id) DO NOTHING
    RETURNING token_id
)
INSERT INTO token_blacklist_outstandingtoken (user_id, jti, token, created_at, expires_at)
SELECT holder.id, %(successor_jti)s, %(successor)s, %(now)s, %(expires_at)s
FROM holder, consumed
RETURNING id
"""


def refresh_token_rotate(*, raw: str) -> dict[str, str]:
    """Consume a refresh token and return its successor pair; TokenInvalid if it is invalid,
    expired, already used, or its user is inactive or has changed password since."""
    token = _presented(raw)
    try:
        user_id = int(token[api_settings.USER_ID_CLAIM])
    except (KeyError, TypeError, ValueError):
        raise TokenInvalid() from None
    successor = _refresh_token(user_id=user_id, digest=token.get(api_settings.REVOKE_TOKEN_CLAIM))
    encoded = str(successor)
    with connection.cursor() as cursor:
        cursor.execute(
            _ROTATE,
            {
                "user_id": user_id,
                "digest": token.get(api_settings.REVOKE_TOKEN_CLAIM),
                "jti": token[api_settings.JTI_CLAIM],
                "now": successor.current_time,
                "successor_jti": successor[api_settings.JTI_CLAIM],
                "successor": encoded,
                "expires_at": datetime_from_epoch(successor["exp"]),
            },
        )
        if cursor.fetchone() is None:
            raise TokenInvalid()
    return {"access": str(successor.access_token), "refresh": encoded}


def _presented(raw: str) -> RefreshToken:
    try:
        return _PresentedRefreshToken(raw)
    except TokenError:
        raise TokenInvalid() from None


def refresh_token_parse(*, raw: str) -> tuple[RefreshToken, User]:
    """Verify a refresh token (signature, expiry, type, audience) and load its active user."""
    token = _presented(raw)
    user = User.objects.active_by_id(token.get(api_settings.USER_ID_CLAIM))
    if user is None:
        raise TokenInvalid()
    if token.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
        raise TokenInvalid()
    return token, user


def refresh_token_consume(*, token: RefreshToken) -> None:
    """Blacklist the token in one statement; TokenInvalid if it already was.

    A token this service has no outstanding record of is refused too: every refresh token it
    issues is recorded by RefreshToken.for_user.
    """
    with connection.cursor() as cursor:
        cursor.execute(_CONSUME, [timezone.now(), token[api_settings.JTI_CLAIM]])
        if cursor.fetchone() is None:
            raise TokenInvalid()


def user_tokens_revoke(*, user: User) -> int:
    """Blacklist every unexpired refresh token the user holds; returns how many."""
    live = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    ).only("id")
    rows = [BlacklistedToken(token=token) for token in live]
    BlacklistedToken.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
