"""Bearer authentication: simplejwt's access-token checks with a leaner user lookup."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import User

# The row the ORM would load, by primary key, without compiling a query for it on every
# request: that compilation cost more CPU than the rest of a `me` request.
_BY_ID = "SELECT * FROM accounts_user WHERE id = %s"  # noqa: S608 - a constant


class JWTAuthentication(authentication.JWTAuthentication):
    """The user of a valid access token, if still active and with the same password."""

    def get_user(self, validated_token) -> User:
        try:
            user_id = int(validated_token[api_settings.USER_ID_CLAIM])
        except (KeyError, TypeError, ValueError):
            raise AuthenticationFailed("The token names no user.") from None
        user = next(iter(User.objects.raw(_BY_ID, [user_id])), None)
        if user is None or not user.is_active:
            raise AuthenticationFailed("The user is unknown or inactive.")
        # Access tokens carry a digest of the password hash: a password change ends them.
        digest = validated_token.get(api_settings.REVOKE_TOKEN_CLAIM)
        if digest != get_md5_hash_password(user.password):
            raise AuthenticationFailed("The password has changed since the token was issued.")
        return user


class JWTScheme(SimpleJWTScheme):
    """Documents this authenticator in the OpenAPI schema exactly as simplejwt's own."""

    target_class = JWTAuthentication
