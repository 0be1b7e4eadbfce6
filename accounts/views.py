"""HTTP endpoints for accounts and sessions: parse, call a service, serialize."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import serializers, services
from accounts.throttling import (
    LoginEmailThrottle,
    LoginIPThrottle,
    OneRoundTripThrottles,
    PasswordChangeThrottle,
    RegisterIPThrottle,
    ResetEmailThrottle,
    ResetIPThrottle,
)
from auth_service import schema
from auth_service.exceptions import ResetTokenInvalid, TokenInvalid

TAG = ["auth"]
EXAMPLE_USER = {
    "id": 42,
    "email": "ada@example.com",
    "full_name": "Ada Lovelace",
    "date_joined": "2026-11-24T09:00:00Z",
}
EXAMPLE_PAIR = {"access": "eyJhbGciOiJIUzI1NiJ9.access", "refresh": "eyJhbGciOiJIUzI1NiJ9.refresh"}
TOKEN_INVALID_401 = schema.error(
    "The refresh token is invalid, expired or already used.",
    TokenInvalid.default_code,
    TokenInvalid.default_detail,
)


def parse(serializer_class, request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class RegisterView(OneRoundTripThrottles, APIView):
    authentication_classes = []
    throttle_classes = [RegisterIPThrottle]

    @extend_schema(
        tags=TAG,
        summary="Create an account",
        description="Email is the username, unique in any letter case. Passwords must pass "
        "the server's validators (length 10-128, not common, not all digits, not like the email).",
        request=serializers.RegisterSerializer,
        responses={
            201: serializers.UserSerializer,
            400: schema.field_errors(
                "Invalid field, weak password or email already registered.",
                {"email": ["An account with this email already exists."]},
            ),
            429: schema.THROTTLED,
            503: schema.UNAVAILABLE,
        },
        examples=[
            OpenApiExample(
                "register",
                request_only=True,
                value={
                    "full_name": "Ada Lovelace",
                    "email": "ada@example.com",
                    "password": "correct horse battery staple",
                },
            ),
            OpenApiExample("created", response_only=True, status_codes=["201"], value=EXAMPLE_USER),
        ],
    )
    def post(self, request: Request) -> Response:
        user = services.user_register(**parse(serializers.RegisterSerializer, request))
        return Response(serializers.user_data(user), status=status.HTTP_201_CREATED)


class LoginView(OneRoundTripThrottles, APIView):
    authentication_classes = []
    throttle_classes = [LoginIPThrottle, LoginEmailThrottle]

    @extend_schema(
        tags=TAG,
        summary="Log in with email and password",
        description="Returns a JWT pair. Wrong password, unknown email and inactive account "
        "all get the same 401 body.",
        request=serializers.LoginSerializer,
        responses={
            200: serializers.TokenPairSerializer,
            400: schema.field_errors("Malformed request.", {"email": ["This field is required."]}),
            401: schema.error(
                "Wrong credentials or inactive account.",
                "invalid_credentials",
                "No active account found with the given credentials.",
            ),
            429: schema.THROTTLED,
            503: schema.UNAVAILABLE,
        },
        examples=[
            OpenApiExample(
                "login",
                request_only=True,
                value={"email": "ada@example.com", "password": "correct horse battery staple"},
            ),
            OpenApiExample("pair", response_only=True, status_codes=["200"], value=EXAMPLE_PAIR),
        ],
    )
    def post(self, request: Request) -> Response:
        return Response(services.user_login(**parse(serializers.LoginSerializer, request)))


class TokenRefreshView(APIView):
    authentication_classes = []

    @extend_schema(
        tags=TAG,
        summary="Rotate a refresh token",
        description="Consumes the refresh token (it stops working) and returns a new pair.",
        request=serializers.RefreshSerializer,
        responses={
            200: serializers.TokenPairSerializer,
            400: schema.field_errors(
                "Malformed request.", {"refresh": ["This field is required."]}
            ),
            401: TOKEN_INVALID_401,
            503: schema.UNAVAILABLE,
        },
        examples=[
            OpenApiExample("pair", response_only=True, status_codes=["200"], value=EXAMPLE_PAIR),
        ],
    )
    def post(self, request: Request) -> Response:
        return Response(services.token_refresh(**parse(serializers.RefreshSerializer, request)))


class LogoutView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAG,
        summary="Log out (revoke a refresh token)",
        description=(
            "Ends the login the refresh token belongs to: that refresh token and every access "
            "token issued along its chain of refreshes get 401 token_invalid from then on. "
            "The user's other logins go on. The token must be the signed-in user's; one of "
            "the login that a refresh already spent (a refresh racing the logout) ends it too."
        ),
        request=serializers.RefreshSerializer,
        responses={
            204: None,
            400: schema.field_errors(
                "Malformed request.", {"refresh": ["This field is required."]}
            ),
            401: schema.error(
                "No bearer token (`not_authenticated`); or the bearer token, or the refresh "
                "token, is invalid, expired, of a login already ended or another user's "
                "(`token_invalid`).",
                TokenInvalid.default_code,
                TokenInvalid.default_detail,
                schema.NO_BEARER,
            ),
            503: schema.UNAVAILABLE,
        },
    )
    def post(self, request: Request) -> Response:
        services.user_logout(user=request.user, **parse(serializers.RefreshSerializer, request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAG,
        summary="The signed-in user",
        responses={
            200: serializers.UserSerializer,
            401: schema.UNAUTHENTICATED,
            503: schema.UNAVAILABLE,
        },
        examples=[OpenApiExample("me", response_only=True, value=EXAMPLE_USER)],
    )
    def get(self, request: Request) -> Response:
        return Response(serializers.user_data(request.user))


class PasswordChangeView(OneRoundTripThrottles, APIView):
    permission_classes = [IsAuthenticated]
    throttle_classes = [PasswordChangeThrottle]

    @extend_schema(
        tags=TAG,
        summary="Change password",
        description="Ends every session: all refresh tokens are revoked and access tokens "
        "issued before the change stop working.",
        request=serializers.PasswordChangeSerializer,
        responses={
            204: None,
            400: schema.field_errors(
                "Wrong current password, or a new password that is weak or the current one.",
                {"current_password": ["The current password is incorrect."]},
            ),
            401: schema.UNAUTHENTICATED,
            429: schema.THROTTLED,
            503: schema.UNAVAILABLE,
        },
    )
    def post(self, request: Request) -> Response:
        services.password_change(
            user=request.user, **parse(serializers.PasswordChangeSerializer, request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


FORGOT_DETAIL = "If an account exists for this email, a reset link is on its way."
RESET_DETAIL = "Your password has been reset. Log in with the new password."


class PasswordForgotView(OneRoundTripThrottles, APIView):
    authentication_classes = []
    throttle_classes = [ResetIPThrottle, ResetEmailThrottle]
    # Its 503s come at the same steps for known and unknown emails, and none sends a link: an
    # app's retries through an outage must not spend the email's budget for the hour after it
    # (services.password_reset_request). The address's limit still counts them.
    refunded_when_unavailable = (ResetEmailThrottle,)

    @extend_schema(
        tags=TAG,
        summary="Ask for a password-reset email",
        description="Always 202 with the same body, whether or not the email has an account. "
        "A known, active account gets an email with a link valid for PASSWORD_RESET_TIMEOUT "
        "seconds (10 minutes by default); asking again replaces the earlier link.",
        request=serializers.PasswordForgotSerializer,
        responses={
            202: serializers.DetailSerializer,
            400: schema.field_errors(
                "Malformed email.", {"email": ["Enter a valid email address."]}
            ),
            429: schema.THROTTLED,
            503: schema.UNAVAILABLE,
        },
        examples=[
            OpenApiExample("forgot", request_only=True, value={"email": "ada@example.com"}),
            OpenApiExample(
                "accepted",
                response_only=True,
                status_codes=["202"],
                value={"detail": FORGOT_DETAIL},
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        services.password_reset_request(**parse(serializers.PasswordForgotSerializer, request))
        return Response({"detail": FORGOT_DETAIL}, status=status.HTTP_202_ACCEPTED)


class PasswordResetView(OneRoundTripThrottles, APIView):
    authentication_classes = []
    throttle_classes = [ResetIPThrottle]

    @extend_schema(
        tags=TAG,
        summary="Set a new password with a reset token",
        description="Uses the token up (once), sets the password and ends every session. A weak "
        "password is rejected without using the token up.",
        request=serializers.PasswordResetSerializer,
        responses={
            200: serializers.DetailSerializer,
            400: schema.field_errors(
                "Unknown, expired or used token (`reset_token_invalid`), or a weak password "
                "(field errors).",
                {"password": ["This password is too common."]},
                (ResetTokenInvalid.default_code, ResetTokenInvalid.default_detail),
            ),
            429: schema.THROTTLED,
            503: schema.UNAVAILABLE,
        },
        examples=[
            OpenApiExample(
                "reset",
                request_only=True,
                value={"token": "3f1c...e9", "password": "a-brand-new-passphrase"},
            ),
            OpenApiExample(
                "done", response_only=True, status_codes=["200"], value={"detail": RESET_DETAIL}
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        services.password_reset_confirm(**parse(serializers.PasswordResetSerializer, request))
        return Response({"detail": RESET_DETAIL})
