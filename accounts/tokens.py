"""JWT sessions: issue pairs, and spend refresh tokens exactly once (rotation and logout).

simplejwt's token classes do the signing and claim checks. A refresh token works while its
signature, expiry and claims check out, its user is active with the password the token was
issued under (it carries a digest of the password hash, so a password change or reset ends
every session at once), its id is not among the spent ones, and its family is not revoked.
Spending is one INSERT whose primary key decides the winner when two requests race with the
same token.

Every refresh token descended from one login shares a family id. A spent token that comes back
(after REUSE_GRACE, which covers a client retrying a refresh whose answer it lost) means two
parties hold the chain, and the live token may be a thief's: the whole family is revoked, so
the thief's successor dies too and the owner signs in again (OAuth's refresh token rotation
with reuse detection).

No token is ever stored: logging in writes nothing, and a copy of the database holds nothing
that signs anyone in.
"""

import logging
import re
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken, Token
from rest_framework_simplejwt.utils import datetime_from_epoch, get_md5_hash_password

from accounts import lost_answers
from accounts.models import RevokedTokenFamily, SpentRefreshToken, User
from auth_service.exceptions import TokenInvalid

TOKEN_MAX = 2048  # longer than any token the service issues; refused unread

logger = logging.getLogger(__name__)

FAMILY_CLAIM = "fam"


def token_pair_for(*, user: User) -> dict[str, str]:
    """A new access + refresh pair for the user's current password, the first of a family."""
    refresh = _refresh_token(
        user_id=user.pk, digest=get_md5_hash_password(user.password), family=uuid.uuid4().hex
    )
    return _pair(refresh)


def _pair(refresh: RefreshToken) -> dict[str, str]:
    access = refresh.access_token
    del access["iat"]  # as in _refresh_token
    return {"access": str(access), "refresh": str(refresh)}


def _refresh_token(*, user_id: int, digest: str | None, family: str | None) -> RefreshToken:
    """The claims RefreshToken.for_user sets (the user's id and their password's digest), and
    the family id."""
    token = RefreshToken()
    # No issue time: PyJWT refuses a token whose "iat" is ahead of its own clock, so any web
    # instance whose clock runs behind the issuer's refused the request sent right after a
    # login or refresh (401, which clients take for a sign-out). Nothing here reads it; "exp"
    # and the spent-token and family records decide.
    del token["iat"]
    token[api_settings.USER_ID_CLAIM] = str(user_id)
    token[api_settings.REVOKE_TOKEN_CLAIM] = digest
    if family is not None:
        token[FAMILY_CLAIM] = family
    return token


# Spend the presented token, only while its user is active with the password it was issued
# under (the digest claim is the hex md5 of the password hash, which PostgreSQL's md5()
# computes) and its family is not revoked. A row back means this request spent it; under
# concurrency the primary key makes every other request wait for the winner's commit and then
# insert nothing.
_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")
_HOLDER = """
WITH holder AS (
    SELECT id FROM accounts_user
    WHERE id = %(user_id)s AND is_active AND md5(password) = lower(%(digest)s)
      AND NOT EXISTS (SELECT FROM accounts_revokedtokenfamily WHERE family = %(family)s)
)"""
_SPEND_ROW = """
INSERT INTO accounts_spentrefreshtoken (jti, user_id, expires_at, spent_at, spent_by)
SELECT %(jti)s, holder.id, %(expires_at)s, statement_timestamp(), %(spent_by)s FROM holder
ON CONFLICT (jti) DO NOTHING
RETURNING jti"""
_SPEND = _HOLDER + _SPEND_ROW
# Logout: the same, and in the same statement (so a lost answer cannot split them) the family
# ends, which signs out the login's access tokens too (accounts.authentication). Kept as long
# as a family revoked for reuse.
_END_FAMILY = """
),
ended AS (
    INSERT INTO accounts_revokedtokenfamily (family, user_id, revoked_at, expires_at)
    SELECT %(family)s, %(user_id)s, statement_timestamp(), statement_timestamp() + %(lifetime)s
    FROM spent WHERE %(family)s IS NOT NULL
    ON CONFLICT (family) DO NOTHING
)
SELECT jti FROM spent
"""
_SPEND_AND_END_FAMILY = _HOLDER + ",\nspent AS (" + _SPEND_ROW + _END_FAMILY


def refresh_token_rotate(*, raw: str) -> dict[str, str]:
    """Spend a refresh token and return its successor pair; TokenInvalid if it is invalid,
    expired, already spent, or its user is inactive or has changed password since."""
    token = _presented(raw)
    successor = _refresh_token(
        user_id=_user_id(token),
        digest=token.get(api_settings.REVOKE_TOKEN_CLAIM),
        # A token from before families existed starts one: its chain is covered from here on.
        family=family_of(token) or uuid.uuid4().hex,
    )
    _spend(token, spent_by=uuid.UUID(hex=successor[api_settings.JTI_CLAIM]))
    return _pair(successor)


def refresh_token_revoke(*, raw: str, user_id: int) -> None:
    """Logout: spend a refresh token of this user and end its login (family), so the access
    tokens issued with it stop working too. One already spent by a rotation ends its login all
    the same. TokenInvalid for anyone else's token, or one whose login has ended, or that
    rotation would refuse for another reason."""
    token = _presented(raw)
    if _user_id(token) != user_id:
        raise TokenInvalid()
    _spend(token, spent_by=uuid.uuid4(), end_family=True)


def _presented(raw: str) -> RefreshToken:
    if not raw or len(raw) > TOKEN_MAX:
        raise TokenInvalid()
    try:
        return RefreshToken(raw)
    except (TokenError, OverflowError, ValueError, TypeError):
        # The last three: an expiry past the calendar's end or given as a string of digits, in
        # a token signed with our key.
        raise TokenInvalid() from None


def _user_id(token: RefreshToken) -> int:
    try:
        user_id = int(token[api_settings.USER_ID_CLAIM])
    except (KeyError, TypeError, ValueError):
        raise TokenInvalid() from None
    if not 0 < user_id < 2**63:  # the column's range: anything else would fail in the query
        raise TokenInvalid()
    return user_id


def family_of(token: Token) -> str | None:
    """The id of the login a refresh or access token descends from (its family); None for a
    token issued before families existed. TokenInvalid for a malformed one."""
    family = token.get(FAMILY_CLAIM)
    if family is None:
        return None
    try:
        return uuid.UUID(hex=family).hex
    except (AttributeError, TypeError, ValueError):
        raise TokenInvalid() from None


def _spend(token: RefreshToken, *, spent_by: uuid.UUID, end_family: bool = False) -> None:
    digest = token.get(api_settings.REVOKE_TOKEN_CLAIM)
    try:
        jti = uuid.UUID(hex=token[api_settings.JTI_CLAIM])
    except (KeyError, AttributeError, TypeError, ValueError):
        raise TokenInvalid() from None
    if not isinstance(digest, str) or not _MD5_HEX.fullmatch(digest):
        raise TokenInvalid()
    user_id, family = _user_id(token), family_of(token)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                _SPEND_AND_END_FAMILY if end_family else _SPEND,
                {
                    "user_id": user_id,
                    "digest": digest,
                    "family": family,
                    "jti": str(jti),
                    "expires_at": datetime_from_epoch(token["exp"]),
                    "spent_by": str(spent_by),
                    "lifetime": _family_lifetime(),
                },
            )
            spent = cursor.fetchone() is not None
    except (OperationalError, InterfaceError) as error:
        if not _spent_after_all(error, jti=jti, spent_by=spent_by):
            raise
        # PostgreSQL spent it and lost the connection before answering: this request did spend
        # it, and its client must get the successor (or its logout) rather than a 503 whose
        # retry the spent token could only fail.
        logger.warning("refresh token of user %s spent although its answer was lost", user_id)
        return
    if not spent:
        if family is not None and end_family and _family_end(user_id, digest, family):
            return
        if family is not None:
            _family_revoke_if_reused(jti=jti, user_id=user_id, family=family)
        raise TokenInvalid()


# Logout with a token already spent by a rotation (a client's timed refresh racing the tap on
# "log out", a stale tab): the caller holds a genuine token of the login and a live access
# token of its user, and asks for the login to end; refusing would leave the successor alive.
# The login ends if its user is active with that password and it has not ended already.
_END_FAMILY_ROW = """
INSERT INTO accounts_revokedtokenfamily (family, user_id, revoked_at, expires_at)
SELECT %(family)s, holder.id, statement_timestamp(), statement_timestamp() + %(lifetime)s
FROM holder
ON CONFLICT (family) DO NOTHING
RETURNING family"""
_END_FAMILY_ALONE = _HOLDER + _END_FAMILY_ROW


def _family_end(user_id: int, digest: str, family: str) -> bool:
    """End a login whose presented refresh token was already spent; True if this ended it."""
    ended_rows = RevokedTokenFamily.objects.filter(family=family, user_id=user_id).exists
    if ended_rows():
        return False  # ended already (a logout, a reuse): 401, as for every token of it
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                _END_FAMILY_ALONE,
                {
                    "user_id": user_id,
                    "digest": digest,
                    "family": family,
                    "lifetime": _family_lifetime(),
                },
            )
            ended = cursor.fetchone() is not None
    except (OperationalError, InterfaceError) as error:
        # Ended, its answer lost: the logout happened, and its retry could only hear a 401.
        # The login had not ended just before, so the row is this request's, or a concurrent
        # ending's: ended as asked either way.
        if not lost_answers.applied_after_all(error, ended_rows):
            raise
        ended = True
    if ended:
        logger.info("logout with a spent refresh token of user %s ended its login", user_id)
    return ended


def _spent_after_all(error: DatabaseError, *, jti: uuid.UUID, spent_by: uuid.UUID) -> bool:
    """Whether this request spent the token after all, its answer lost (lost_answers.py)."""
    return bool(
        lost_answers.applied_after_all(
            error, SpentRefreshToken.objects.filter(jti=jti, spent_by=spent_by).exists
        )
    )


def _family_lifetime() -> timedelta:
    """How long an ended login's record is kept: until every token of it has expired, its
    access tokens too, which outlive its refresh tokens where JWT_ACCESS_LIFETIME is set the
    longer. Deleted sooner, they would work again."""
    return max(api_settings.ACCESS_TOKEN_LIFETIME, api_settings.REFRESH_TOKEN_LIFETIME)


def _family_revoke_if_reused(*, jti: uuid.UUID, user_id: int, family: str) -> None:
    """Revoke the family if this token was spent before REUSE_GRACE ago.

    Within the grace, a second use is a client that sent the same refresh twice (it lost the
    first answer, or two of its tabs raced): refused, but the chain the first use continued
    stays. The token is genuine (signed by us), so only a party that held it can get here.
    Both times are PostgreSQL's, so web instances whose clocks differ judge alike.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _REVOKE_IF_REUSED,
            {
                "family": family,
                "jti": str(jti),
                "user_id": user_id,
                "grace": settings.REFRESH_REUSE_GRACE,
                "lifetime": _family_lifetime(),
            },
        )
        revoked = cursor.fetchone() is not None
    if revoked:
        logger.warning(
            "spent refresh token of user %s used again: its login's sessions are ended", user_id
        )


# The family ends, recorded until every token it could hold has expired.
_REVOKE_IF_REUSED = """
INSERT INTO accounts_revokedtokenfamily (family, user_id, revoked_at, expires_at)
SELECT %(family)s, user_id, statement_timestamp(), statement_timestamp() + %(lifetime)s
FROM accounts_spentrefreshtoken
WHERE jti = %(jti)s AND user_id = %(user_id)s AND spent_at < statement_timestamp() - %(grace)s
ON CONFLICT (family) DO NOTHING
RETURNING family
"""


# A spent token's record outlives its expiry by this much: a web instance whose clock runs
# behind the one deleting (or a leeway set later) still accepts the token for a moment, and
# without its record it could be spent again.
SPENT_RECORD_MARGIN = timedelta(hours=1)


def expired_spent_tokens_delete() -> int:
    """Forget spent tokens and revoked families whose tokens all expired over
    SPENT_RECORD_MARGIN ago (they fail the expiry check, even on a clock that runs behind);
    how many records."""
    cutoff = timezone.now() - SPENT_RECORD_MARGIN
    spent, _ = SpentRefreshToken.objects.filter(expires_at__lt=cutoff).delete()
    families, _ = RevokedTokenFamily.objects.filter(expires_at__lt=cutoff).delete()
    return spent + families
