"""Password-reset tokens in Redis: issued by the web process, checked by the worker, used once.

Redis holds only SHA-256 digests, never a raw token:

    reset:token:<digest> -> user id       (the token's life)
    reset:bind:<digest>  -> binding       (the account as the token was issued for; same life)
    reset:user:<id>      -> digest        (the user's current token, so a new one replaces it)
    reset:live:<id>      -> sorted set    (every token of the user that may still work, by
                                           issue time, so none is missed when they all must end)

A token works only while the account is as it was when the token was issued: the binding is an
HMAC of the user's password hash and email at that moment. The reset that uses a token stores a
new hash only if the old one is still there (one UPDATE, so PostgreSQL decides which of two
requests with one token wins), and a new password or email set any other way ends the token
the same way. That makes PostgreSQL, not Redis, the judge of "used": a Redis failure after the
new password is committed cannot leave a used link working, and one before it cannot use a link
up without setting the password. Redis forgets the user's tokens once the password is set.
The binding has a key of its own so that the token's key keeps the form the previous release
reads: during a deploy, old and new processes take each other's tokens.

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
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.crypto import salted_hmac
from redis.exceptions import RedisError

from accounts.tokens import TOKEN_MAX
from auth_service import redis_client

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

PREFIX = "auth:reset:"
_HMAC_SALT = "accounts.reset_tokens"
_BINDING_SALT = "accounts.reset_tokens.binding"

# Issue atomically: the new token, the user's current one, and its place among the user's live
# tokens, all with one expiry. Earlier tokens keep working until the new link is on its way
# (token_replacing). Writes first: a Redis out of memory (or a read-only replica) refuses a
# script's first SET, before anything changed. The place is the server's clock in microseconds,
# but always after the newest token already there: a clock stepped back (NTP, a failover to
# another machine) must not put a new token before an old one.
_ISSUE = """
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
local now = redis.call('TIME')
local place = now[1] * 1000000 + now[2]
local newest = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= place then place = tonumber(newest[2]) + 1 end
redis.call('ZADD', KEYS[3], place, ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 1
"""

# The new link is on its way: every token of the user issued before it ends. Tokens issued
# after it (a request still in flight) are left alone.
_RETIRE = """
local issued = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not issued then return 0 end
local older = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. issued)
for _, old in ipairs(older) do redis.call('DEL', ARGV[2] .. old, ARGV[3] .. old) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. issued)
return #older
"""

# Take back a token whose email could not be queued. If it was the user's current token, the
# newest one still alive (the link already in the inbox) is current again. Deletes first: a
# Redis out of memory still lets the script finish once it has written.
_WITHDRAW = """
redis.call('DEL', KEYS[2], KEYS[4])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 1 end
for _, token in ipairs(redis.call('ZREVRANGE', KEYS[3], 0, -1)) do
  local ttl = redis.call('PTTL', ARGV[2] .. token)
  if ttl > 0 then
    redis.call('SET', KEYS[1], token, 'PX', ttl)
    return 1
  end
end
redis.call('DEL', KEYS[1])
return 1
"""

# Bind a token of the previous release (it has no binding) to the account as it is now, for the
# rest of the token's life; the binding stored (this one, or a racing request's) comes back.
_ADOPT = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return false end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl, 'NX')
return redis.call('GET', KEYS[2])
"""

# End every token of the user: a password set some other way ends every emailed link too.
_REVOKE = """
for _, token in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  redis.call('DEL', ARGV[1] .. token, ARGV[2] .. token)
end
local current = redis.call('GET', KEYS[1])
if current then redis.call('DEL', ARGV[1] .. current, ARGV[2] .. current) end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


@dataclass(frozen=True)
class IssuedToken:
    nonce: str
    token: str
    user_id: int


@dataclass(frozen=True)
class PeekedToken:
    user_id: int
    binding: str | None  # None: issued by a release before bindings (a deploy's first minutes)


def _redis():
    return redis_client.client()


def digest(token: str) -> str:
    """SHA-256 hex digest: what Redis stores in place of a secret."""
    return hashlib.sha256(token.encode()).hexdigest()


def _token_key(token_digest: str) -> str:
    return f"{PREFIX}token:{token_digest}"


def _bind_key(token_digest: str) -> str:
    return f"{PREFIX}bind:{token_digest}"


def _user_key(user_id: int) -> str:
    return f"{PREFIX}user:{user_id}"


def _live_key(user_id: int) -> str:
    return f"{PREFIX}live:{user_id}"


def token_from_nonce(nonce: str) -> str:
    """The raw token for a nonce: 256 bits, URL-safe. Needs SECRET_KEY to compute."""
    return salted_hmac(_HMAC_SALT, nonce, algorithm="sha256").hexdigest()


def binding(user: "User | None") -> str:
    """What ties a token to the account as it is now (its password hash and email); for no
    account, the same work on empty values."""
    password, email = (user.password, user.email) if user is not None else ("", "")
    return salted_hmac(_BINDING_SALT, f"{password}\0{email}", algorithm="sha256").hexdigest()[:32]


def binds(peeked: PeekedToken, user: "User") -> bool:
    """Whether the token was issued for the account as it is now."""
    if peeked.user_id != user.pk:
        return False
    # No binding: a token the release before bindings issued, in a deploy's first minutes. The
    # worker emails it as that release would; a reset binds it first (token_adopt).
    return peeked.binding is None or hmac.compare_digest(peeked.binding, binding(user))


def token_issue(*, user: "User") -> IssuedToken:
    """Store a fresh token for the user for PASSWORD_RESET_TIMEOUT; any earlier one ends."""
    with token_replacing(user_id=user.pk, binding=binding(user)) as issued:
        pass
    return issued


@contextmanager
def token_replacing(*, user_id: int, binding: str) -> Iterator[IssuedToken]:
    """A fresh token for the user (bound to the account as `binding` says), live from the start
    of the block.

    The user's earlier tokens end when the block succeeds. When it fails (the email could not
    be queued), the new token is taken back and the earlier one, already in the user's inbox,
    keeps working: a failed request must not cost the user a link they have.
    """
    nonce = secrets.token_urlsafe(32)
    token = token_from_nonce(nonce)
    token_digest = digest(token)
    redis_client.run(
        _redis(),
        _ISSUE,
        [_user_key(user_id), _token_key(token_digest), _live_key(user_id), _bind_key(token_digest)],
        [token_digest, user_id, settings.PASSWORD_RESET_TIMEOUT, binding],
    )
    issued = IssuedToken(nonce=nonce, token=token, user_id=user_id)
    try:
        yield issued
    except BaseException:
        _withdraw(issued)
        raise
    _retire_earlier(issued)


def _withdraw(issued: IssuedToken) -> None:
    token_digest = digest(issued.token)
    try:
        redis_client.run(
            _redis(),
            _WITHDRAW,
            [
                _user_key(issued.user_id),
                _token_key(token_digest),
                _live_key(issued.user_id),
                _bind_key(token_digest),
            ],
            [token_digest, f"{PREFIX}token:"],
        )
    except RedisError as error:
        # Unsent, the new token is unknown to anyone; the earlier ones were never deleted, and
        # the next link that goes out, or a password change, ends them all.
        logger.warning(
            "unsent reset token of user %s left to expire: %s",
            issued.user_id,
            type(error).__name__,
        )


def _retire_earlier(issued: IssuedToken) -> None:
    # The same one script for every forgot, whether the user had earlier tokens or not, and
    # for unknown emails too: timing must not tell them apart.
    try:
        redis_client.run(
            _redis(),
            _RETIRE,
            [_live_key(issued.user_id)],
            [digest(issued.token), f"{PREFIX}token:", f"{PREFIX}bind:"],
        )
    except RedisError as error:
        # The new link is on its way: the request succeeded. The earlier ones end with the next
        # link that goes out, a password change, or their expiry.
        logger.warning(
            "earlier reset links of user %s left to expire: %s",
            issued.user_id,
            type(error).__name__,
        )


def _peeked(user_id: bytes | None, bound: bytes | None) -> PeekedToken | None:
    if user_id is None:
        return None
    return PeekedToken(user_id=int(user_id), binding=bound.decode() if bound else None)


def token_peek(*, token: str) -> PeekedToken | None:
    """Whose a live token is, without using it up; None if unknown or expired."""
    if not token or len(token) > TOKEN_MAX:
        return None
    token_digest = digest(token)
    return _peeked(*_redis().mget(_token_key(token_digest), _bind_key(token_digest)))


def token_adopt(*, token: str, user: "User") -> PeekedToken | None:
    """Bind a token the previous release issued (a deploy's first minutes) to the account as
    it is now, so that the password a reset stores with it uses it up like any other; None if
    it is gone meanwhile."""
    token_digest = digest(token)
    bound = redis_client.run(
        _redis(), _ADOPT, [_token_key(token_digest), _bind_key(token_digest)], [binding(user)]
    )
    return PeekedToken(user_id=user.pk, binding=bound.decode()) if bound else None


def token_revoke(*, user_id: int) -> None:
    """Forget every token of the user: after a new password or email (when none of them works
    any more anyway), and on a deactivation (which only this ends: a reactivation must not
    bring them back)."""
    redis_client.run(
        _redis(),
        _REVOKE,
        [_user_key(user_id), _live_key(user_id)],
        [f"{PREFIX}token:", f"{PREFIX}bind:"],
    )


def token_time_left(*, user: "User", token: str) -> float | None:
    """Seconds the token still works for this user; None if it no longer does (expired, ended
    by a newer link, or the account changed since: a new password or email). What the worker
    checks before it emails the link, and what the email says is left."""
    token_digest = digest(token)
    key = _token_key(token_digest)
    # One round trip, one moment: owner and time left come from the same instant (MULTI/EXEC).
    pipeline = _redis().pipeline().get(key).get(_bind_key(token_digest)).pttl(key)
    owner, bound, left_ms = pipeline.execute()
    peeked = _peeked(owner, bound)
    if peeked is None or not binds(peeked, user) or left_ms <= 0:
        return None
    return left_ms / 1000


def token_is_current(*, user_id: int, token: str) -> bool:
    """Whether this is the user's current token: the newest one still alive."""
    current = _redis().get(_user_key(user_id))
    return current is not None and hmac.compare_digest(current.decode(), digest(token))
