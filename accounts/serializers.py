"""Request and response shapes. Shape only: the decisions are in services."""

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.managers import EMAIL_MAX, email_stored_form
from accounts.validators import (
    PASSWORD_MAX,
    email_hides_characters,
    email_is_ambiguous,
    validate_full_name,
)
from auth_service.schema import NEW_PASSWORD_MARK


class StringOnly:
    """Accepts JSON strings only: DRF's text fields would quietly turn 42 into "42"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class TextField(StringOnly, serializers.CharField):
    pass


class EmailField(StringOnly, serializers.EmailField):
    def to_internal_value(self, data):
        email = super().to_internal_value(data)
        # Here rather than as a validator: an address that Django's validator refuses too gets
        # "Enter a valid email address." once, not twice.
        if email_hides_characters(email):
            self.fail("invalid")
        return email


class TokenField(TextField):
    """A token as sent: any string, even empty, far too long or holding a NUL, is a token the
    service refuses with the endpoint's own invalid-token error, not a field error."""

    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, trim_whitespace=False, **kwargs)
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]


def password_field() -> TextField:
    return TextField(max_length=PASSWORD_MAX, trim_whitespace=False, write_only=True)


@extend_schema_field({"type": "string", NEW_PASSWORD_MARK: True})
class NewPasswordField(TextField):
    """A password being set: checked by the password validators in services, and documented
    with their rules (auth_service.schema.document_password_rules)."""


def new_password_field() -> NewPasswordField:
    return NewPasswordField(max_length=PASSWORD_MAX, trim_whitespace=False, write_only=True)


class UserSerializer(serializers.Serializer):
    # Declared rather than a ModelSerializer: introspecting the model on every instance was a
    # measurable share of each `me` request.
    id = serializers.IntegerField(read_only=True)
    email = serializers.EmailField(read_only=True)
    full_name = serializers.CharField(read_only=True)
    date_joined = serializers.DateTimeField(read_only=True)


_DATE_JOINED = serializers.DateTimeField()


def user_data(user) -> dict:
    """UserSerializer's output, built directly: instantiating a serializer deep-copies its
    fields, a third of the CPU of a `me` request. The tests hold the two to the same output."""
    return {
        "id": user.id,
        "email": user.email,
        "full_name": user.full_name,
        "date_joined": _DATE_JOINED.to_representation(user.date_joined),
    }


class RegisterSerializer(serializers.Serializer):
    full_name = TextField(max_length=150, validators=[validate_full_name])
    email = EmailField(max_length=EMAIL_MAX)
    password = new_password_field()

    def validate_email(self, email: str) -> str:
        # New accounts only: login and forgot still find an account made before this check.
        if email_is_ambiguous(email):
            raise serializers.ValidationError(self.fields["email"].error_messages["invalid"])
        # Stored lower-cased with the domain encoded, which lengthens it (and "İ" lower-cases
        # to two characters): the stored form must fit the column too.
        if len(email_stored_form(email)) > EMAIL_MAX:
            message = self.fields["email"].error_messages["max_length"]
            raise serializers.ValidationError(message.format(max_length=EMAIL_MAX))
        return email


class LoginSerializer(serializers.Serializer):
    email = EmailField(max_length=EMAIL_MAX)
    password = password_field()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(
        help_text="Access JWT; send as `Authorization: Bearer <access>`."
    )
    refresh = serializers.CharField(help_text="Refresh JWT; single use, rotated on refresh.")


class RefreshSerializer(serializers.Serializer):
    refresh = TokenField()


class PasswordChangeSerializer(serializers.Serializer):
    current_password = password_field()
    new_password = new_password_field()


class PasswordForgotSerializer(serializers.Serializer):
    email = EmailField(max_length=EMAIL_MAX)


class PasswordResetSerializer(serializers.Serializer):
    token = TokenField()
    password = new_password_field()


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()
