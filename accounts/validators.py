"""Validators Django does not ship."""

import stringprep
import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

# Format (zero-width), control, private-use, surrogate and unassigned code points, and line and
# paragraph separators. Django's EmailValidator accepts them in a domain, so "ada@example.com"
# with a zero-width space after it would be a second account; and the IDNA encoding applied when
# an email is sent drops most zero-width characters (stringprep's table B.1, which also lists
# invisible marks such as variation selectors), so that account's mail would reach the first.
_UNSEEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def email_hides_characters(email: str) -> bool:
    """True if the email holds whitespace or a character that a reader cannot see or that
    sending would drop: such an email is not a valid address."""
    return any(
        unicodedata.category(char) in _UNSEEN_CATEGORIES
        or char.isspace()
        or stringprep.in_table_b1(char)
        for char in email
    )


def validate_email_characters(email: str) -> None:
    """The model's check of email_hides_characters, with the message of a malformed address."""
    if email_hides_characters(email):
        raise ValidationError(EmailValidator.message, code=EmailValidator.code)


class MaximumLengthValidator:
    """Reject absurdly long passwords so hashing cost stays bounded."""

    def __init__(self, max_length: int = 128):
        self.max_length = max_length

    def validate(self, password: str, user=None) -> None:
        if len(password) > self.max_length:
            raise ValidationError(
                f"This password is too long. It must contain at most {self.max_length} characters.",
                code="password_too_long",
            )

    def get_help_text(self) -> str:
        return f"Your password must contain at most {self.max_length} characters."
