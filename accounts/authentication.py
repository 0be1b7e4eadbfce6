"""Bearer authentication: simplejwt's access-token checks with a leaner user lookup.

simplejwt loads the user with objects.get(); compiling that query cost more CPU than the rest
of a `me` request, so the lookup goes through UserManager.active_by_id instead.
"""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import User


class JWTAuthentication(authentication.JWTAuthentication):
    """The user of a valid access token, if still active and with the same password."""

    def get_user(self, validated_token) -> User:
        user = User.objects.active_by_id(validated_token.get(api_settings.USER_ID_CLAIM))
        if user is None:
            raise AuthenticationFailed("The user is unknown or inactive.")
        # Access tokens carry a digest of the password hash: a password change ends them.
        digest = validated_token.get(api_settings.REVOKE_TOKEN_CLAIM)
        if digest != get_md5_hash_password(user.password):
            raise AuthenticationFailed("The password has changed since the token was issued.")
        return user


class JWTScheme(SimpleJWTScheme):
    """Documents this authenticator in the OpenAPI schema exactly as simplejwt's own."""

    target_class = JWTAuthentication
