"""Password-reset tokens in Redis: issued by the web process, checked by the worker, used once.

Redis holds only SHA-256 digests, never a raw token:

    reset:token:<digest> -> user id       (the token's life; consumed by GETDEL)
    reset:user:<id>      -> digest        (the user's current token, so a new one replaces it)

The raw token is derived from a random 256-bit nonce with an HMAC keyed by the server secret.
The Celery message carries only the user id and the nonce, so the broker (also Redis) never
holds anything that works as a token without the secret.
"""

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.utils.crypto import salted_hmac
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from accounts.serializers import TOKEN_MAX
from auth_service import redis_scripts

logger = logging.getLogger(__name__)

PREFIX = "auth:reset:"
_HMAC_SALT = "accounts.reset_tokens"

# Issue atomically: store the new pair with one expiry, and hand back the user's previous token,
# which keeps working until its link is no longer the latest one (token_replacing). Writes
# first: a Redis out of memory (or a read-only replica) refuses a script's first SET, before
# anything changed.
_ISSUE = """
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return old
"""

# Take back a token whose email could not be queued: the previous one, if still alive, is the
# user's current token again, unless a newer request has replaced both meanwhile.
_WITHDRAW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local ttl = -2
  if ARGV[2] ~= '' then ttl = redis.call('PTTL', ARGV[3] .. ARGV[2]) end
  if ttl > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl) else redis.call('DEL', KEYS[1]) end
end
redis.call('DEL', KEYS[2])
return 1
"""

# Consume atomically: whoever gets the user id back is the one request that used the token.
# Its remaining life comes back too, so a reset that fails after this can put it back.
_CONSUME = """
local ttl = redis.call('PTTL', KEYS[1])
local uid = redis.call('GETDEL', KEYS[1])
if not uid then return nil end
local user_key = ARGV[1] .. uid
if redis.call('GET', user_key) == ARGV[2] then redis.call('DEL', user_key) end
return {uid, ttl}
"""

# Put a consumed token back for the rest of its life, unless the user has asked for a newer one.
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

# Drop the user's live token, if any: a password set some other way ends the emailed link too.
_REVOKE = """
local current = redis.call('GET', KEYS[1])
if current then redis.call('DEL', KEYS[1], ARGV[1] .. current) end
return 1
"""


@dataclass(frozen=True)
class IssuedToken:
    nonce: str
    token: str
    user_id: int
    previous_digest: str | None = None


@dataclass(frozen=True)
class ConsumedToken:
    user_id: int
    token_digest: str
    ms_left: int


def _redis():
    return get_redis_connection("default")


def digest(token: str) -> str:
    """SHA-256 hex digest: what Redis stores in place of a secret."""
    return hashlib.sha256(token.encode()).hexdigest()


def _token_key(token_digest: str) -> str:
    return f"{PREFIX}token:{token_digest}"


def _user_key(user_id: int) -> str:
    return f"{PREFIX}user:{user_id}"


def token_from_nonce(nonce: str) -> str:
    """The raw token for a nonce: 256 bits, URL-safe. Needs SECRET_KEY to compute."""
    return salted_hmac(_HMAC_SALT, nonce, algorithm="sha256").hexdigest()


def token_issue(*, user_id: int) -> IssuedToken:
    """Store a fresh token for the user for PASSWORD_RESET_TIMEOUT; any earlier one ends."""
    with token_replacing(user_id=user_id) as issued:
        pass
    return issued


@contextmanager
def token_replacing(*, user_id: int) -> Iterator[IssuedToken]:
    """A fresh token for the user, live from the start of the block.

    The user's earlier token ends when the block succeeds. When it fails (the email could not
    be queued), the new token is taken back and the earlier one, already in the user's inbox,
    keeps working: a failed request must not cost the user a link they have.
    """
    nonce = secrets.token_urlsafe(32)
    token = token_from_nonce(nonce)
    token_digest = digest(token)
    previous = redis_scripts.run(
        _redis(),
        _ISSUE,
        [_user_key(user_id), _token_key(token_digest)],
        [token_digest, user_id, settings.PASSWORD_RESET_TIMEOUT, f"{PREFIX}token:"],
    )
    issued = IssuedToken(
        nonce=nonce,
        token=token,
        user_id=user_id,
        previous_digest=previous.decode() if previous is not None else None,
    )
    try:
        yield issued
    except BaseException:
        _withdraw(issued)
        raise
    _retire_previous(issued)


def _withdraw(issued: IssuedToken) -> None:
    try:
        redis_scripts.run(
            _redis(),
            _WITHDRAW,
            [_user_key(issued.user_id), _token_key(digest(issued.token))],
            [digest(issued.token), issued.previous_digest or "", f"{PREFIX}token:"],
        )
    except RedisError as error:
        # Unsent, the new token is unknown to anyone; the earlier one was never deleted.
        logger.warning(
            "unsent reset token of user %s left to expire: %s",
            issued.user_id,
            type(error).__name__,
        )


def _retire_previous(issued: IssuedToken) -> None:
    # Always one DEL, with or without an earlier token: forgot for an unknown email (whose
    # placeholder account nearly always has one) must take as long as for a known one.
    try:
        _redis().delete(_token_key(issued.previous_digest or "none"))
    except RedisError as error:
        # The new link is on its way: the request succeeded. The earlier link expires on time.
        logger.warning(
            "earlier reset link of user %s left to expire: %s",
            issued.user_id,
            type(error).__name__,
        )


def token_peek(*, token: str) -> int | None:
    """The user id a live token belongs to, without using it up."""
    if not token or len(token) > TOKEN_MAX:
        return None
    user_id = _redis().get(_token_key(digest(token)))
    return int(user_id) if user_id is not None else None


def token_consume(*, token: str) -> ConsumedToken | None:
    """Use the token up; None if unknown, expired or already used."""
    token_digest = digest(token)
    used = redis_scripts.run(
        _redis(), _CONSUME, [_token_key(token_digest)], [f"{PREFIX}user:", token_digest]
    )
    if used is None:
        return None
    user_id, ms_left = used
    return ConsumedToken(user_id=int(user_id), token_digest=token_digest, ms_left=int(ms_left))


def token_restore(consumed: ConsumedToken) -> bool:
    """Make a consumed token work again for the rest of its life (the reset it was used for
    failed), unless the user has a newer one by now. False if it could not be put back."""
    if consumed.ms_left <= 0:
        return False
    try:
        restored = redis_scripts.run(
            _redis(),
            _RESTORE,
            [_user_key(consumed.user_id), _token_key(consumed.token_digest)],
            [consumed.token_digest, consumed.user_id, consumed.ms_left],
        )
    except RedisError as error:
        logger.warning(
            "reset token of user %s not put back: %s", consumed.user_id, type(error).__name__
        )
        return False
    return bool(restored)


def token_revoke(*, user_id: int) -> None:
    """Make the user's live token, if any, stop working."""
    redis_scripts.run(_redis(), _REVOKE, [_user_key(user_id)], [f"{PREFIX}token:"])


def token_is_current(*, user_id: int, token: str) -> bool:
    """Whether this is still the user's live token (not expired, replaced or used)."""
    current = _redis().get(_user_key(user_id))
    return current is not None and hmac.compare_digest(current.decode(), digest(token))
