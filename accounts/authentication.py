"""Bearer authentication: simplejwt's access-token checks, with a lean user lookup and a cache
of tokens whose signature has already been checked.

A client sends the same access token with every request for its whole lifetime (minutes), and
verifying it (base64, JSON, HMAC, claims) was a quarter of a `me` request's CPU. The outcome for
the same bytes never changes except by expiry, so a verified token is remembered until its
`exp`. Everything that can change per request (the user still active, the password unchanged,
the login not ended by logout or reuse detection) is checked on every request, against the
database.
"""

import threading
import time

from cachetools import TLRUCache
from django.conf import settings
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts import tokens
from accounts.models import User


def _expires_at(_raw: bytes, token: Token, _now: float) -> float:
    return token["exp"]


class VerifiedTokens:
    """Access tokens that passed simplejwt's checks, kept until they expire (thread-safe)."""

    def __init__(self, size: int):
        self._tokens = TLRUCache(maxsize=size, ttu=_expires_at, timer=time.time)
        self._lock = threading.Lock()

    def get(self, raw: bytes) -> Token | None:
        with self._lock:
            return self._tokens.get(raw)

    def add(self, raw: bytes, token: Token) -> None:
        with self._lock:
            self._tokens[raw] = token


verified_tokens = VerifiedTokens(settings.ACCESS_TOKEN_CACHE_SIZE)

# RFC 9110 section 11.1: the scheme is case-insensitive; some clients send "bearer".
_SCHEMES = {scheme.lower().encode() for scheme in api_settings.AUTH_HEADER_TYPES}


class JWTAuthentication(authentication.JWTAuthentication):
    """The user of a valid access token, if still active, with the same password, and not
    signed out of the login the token belongs to."""

    def get_raw_token(self, header: bytes) -> bytes | None:
        parts = header.split()
        if not parts or parts[0].lower() not in _SCHEMES:
            return None  # another scheme, or none: not this authenticator's
        if len(parts) != 2:
            raise AuthenticationFailed(
                "Authorization header must contain two space-delimited values",
                code="bad_authorization_header",
            )
        return parts[1]

    def get_validated_token(self, raw_token: bytes) -> Token:
        token = verified_tokens.get(raw_token)
        if token is None:
            try:
                token = super().get_validated_token(raw_token)
            except (OverflowError, ValueError, TypeError):
                # An expiry past the calendar's end, or digits in a string (which PyJWT takes
                # but simplejwt's date conversion does not), in a token signed with our key.
                raise InvalidToken() from None
            verified_tokens.add(raw_token, token)
        return token

    def get_user(self, validated_token) -> User:
        user = User.objects.active_in_session(
            validated_token.get(api_settings.USER_ID_CLAIM), tokens.family_of(validated_token)
        )
        if user is None:
            raise AuthenticationFailed("The user is unknown or inactive, or signed out.")
        # Access tokens carry a digest of the password hash: a password change ends them.
        digest = validated_token.get(api_settings.REVOKE_TOKEN_CLAIM)
        if digest != get_md5_hash_password(user.password):
            raise AuthenticationFailed("The password has changed since the token was issued.")
        return user


class JWTScheme(SimpleJWTScheme):
    """Documents this authenticator in the OpenAPI schema exactly as simplejwt's own."""

    target_class = JWTAuthentication
