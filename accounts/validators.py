"""Validators Django does not ship."""

import stringprep
import unicodedata
from itertools import pairwise

import idna
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, validate_email

from accounts.managers import email_lower, email_stored_form

# Format (zero-width), control, private-use, surrogate and unassigned code points, and line and
# paragraph separators. Django's EmailValidator accepts them in a domain, so "ada@example.com"
# with a zero-width space after it would be a second account; and the IDNA encoding applied when
# an email is sent drops most zero-width characters (stringprep's table B.1, which also lists
# invisible marks such as variation selectors), so that account's mail would reach the first.
_UNSEEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


# Characters a name must not hold: controls (a bell, a newline), line and paragraph separators,
# and the direction embeddings, overrides and isolates that make text show in another order
# than it is stored (U+202E shows "Ada" as "adA" in the admin). The zero-width joiners and the
# direction marks stay: Persian, Indic and emoji names need them.
_NAME_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_DIRECTION_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Letters and symbols that show as nothing: Hangul fillers and the blank braille pattern.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
NAME_INVISIBLE = "Enter a name with at least one visible character."
NAME_CONTROL = "A name cannot hold control or text-direction characters."


def validate_full_name(name: str) -> None:
    """A name a person can read: something visible, and nothing that would break a line or
    reorder the text around it where the name is shown."""
    if any(
        unicodedata.category(char) in _NAME_REFUSED_CATEGORIES or char in _DIRECTION_CONTROLS
        for char in name
    ):
        raise ValidationError(NAME_CONTROL, code="invalid")
    if not any(
        unicodedata.category(char)[0] in "LNPS"
        and char not in _BLANK_LETTERS
        and not stringprep.in_table_b1(char)
        for char in name
    ):
        raise ValidationError(NAME_INVISIBLE, code="invalid")


def email_hides_characters(email: str) -> bool:
    """True if the email holds whitespace or a character that a reader cannot see or that
    sending would drop: such an email is not a valid address."""
    return any(
        unicodedata.category(char) in _UNSEEN_CATEGORIES
        or char.isspace()
        or stringprep.in_table_b1(char)
        for char in email
    )


def email_domain_sends_elsewhere(email: str) -> bool:
    """True if sending would write the domain another way: IDNA's mapping (UTS 46, as the email
    provider's client encodes it) folds look-alikes such as a fullwidth "ｅ", the "ﬁ" ligature or
    a decomposed accent into another domain, so "ada@ｅxample.com" would be a second account
    whose mail reaches ada@example.com. Compared lower-cased, as addresses are stored."""
    domain = email_lower(email.rpartition("@")[2].strip())
    if domain.isascii():
        return False
    try:
        mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
        encoded = idna.encode(domain, uts46=True)  # as stored (accounts.managers)
    except (idna.IDNAError, UnicodeError):
        return True  # a domain IDNA cannot encode: no mail reaches it
    # Lower-cased again: the mapping writes Cherokee letters upper-case, as lower() does not.
    if mapped.lower() != domain:
        return True
    if settings.EMAIL_BACKEND == SMTP_BACKEND:
        # Django's own SMTP backend encodes the domain with IDNA 2003, which maps more ("ß" to
        # "ss"): through it, such a domain's mail would go to another domain.
        try:
            return domain.encode("idna") != encoded
        except UnicodeError:
            return True
    return False


# RFC 5321's limit on the part before the "@".
LOCAL_PART_MAX = 64


def email_local_part_unsendable(email: str) -> bool:
    """True if the part before the "@" is not ASCII, longer than mail allows, or quoted.

    Django's EmailValidator means ASCII letters there, but matches them ignoring case, which in
    Python also lets "ı", "ſ", "İ" and the Kelvin sign through: "ıvan@" would be an account
    apart from "ivan@", and sending encodes such a name into an address no mailbox has. A
    quoted name is the same mailbox as the name unquoted (RFC 5321 4.1.2: '"ada"@' and
    '"\\a\\d\\a"@' are "ada@"), so it would be a second account for one mailbox. So would an
    RFC 2047 encoded word ("=?utf-8?q?ada?=@"), which Python's mail parser decodes when Django
    sends ("ada@"), though no address may hold one (RFC 2047 5).
    """
    local = email.rpartition("@")[0]
    return not local.isascii() or len(local) > LOCAL_PART_MAX or '"' in local or "=?" in local


def email_stored_form_invalid(email: str) -> bool:
    """True if the form the address is stored in (accounts.managers.email_stored_form) is not
    one Django takes as an email, so that sign-in would refuse it as typed: a last label that
    mixes ASCII and other letters ("xn--i-fka32l"). Or if no account's mail goes to the domain:
    an IP address in brackets, a host name alone ("localhost", which Django lets through), or
    an "xn--" label that decodes to no name."""
    stored = email_stored_form(email)
    domain = stored.rpartition("@")[2]
    if domain.startswith("[") or "." not in domain:
        return True
    if any(_no_name(label) for label in domain.split(".") if label.startswith("xn--")):
        return True
    try:
        validate_email(stored)
    except ValidationError:
        return True
    return False


def _no_name(label: str) -> bool:
    """An ASCII form ("xn--...") that decodes to no name: no mail reaches it. Only the label's
    encoding is judged; which names a registry takes is its own business."""
    try:
        name = label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        return True
    return not name or name.isascii() or not name.isprintable()


def email_is_ambiguous(email: str) -> bool:
    """An address that does not say, as typed, where its mail goes: not a valid address."""
    return (
        email_hides_characters(email)
        or email_local_part_unsendable(email)
        or email_domain_sends_elsewhere(email)
        or email_stored_form_invalid(email)
    )


def validate_email_characters(email: str) -> None:
    """The model's check of email_is_ambiguous, with the message of a malformed address."""
    if email_is_ambiguous(email):
        raise ValidationError(EmailValidator.message, code=EmailValidator.code)


# Long enough for any real passphrase, small enough that hashing cost stays bounded.
PASSWORD_MAX = 128


class MaximumLengthValidator:
    """Reject absurdly long passwords so hashing cost stays bounded."""

    def __init__(self, max_length: int = PASSWORD_MAX):
        self.max_length = max_length

    def validate(self, password: str, user=None) -> None:
        if len(password) > self.max_length:
            raise ValidationError(
                f"This password is too long. It must contain at most {self.max_length} characters.",
                code="password_too_long",
            )

    def get_help_text(self) -> str:
        return f"Your password must contain at most {self.max_length} characters."


class PatternPasswordValidator:
    """Refuse a password that is one short pattern: a block repeated ("aaaaaaaaaa",
    "passwordpassword", "abcabcabca") or a run of consecutive characters ("abcdefghij",
    "zyxwvutsrq"). Their length hides how few guesses they take; NIST SP 800-63B names both."""

    message = "This password is a repeated or consecutive pattern, which is quick to guess."

    def validate(self, password: str, user=None) -> None:
        if _is_periodic(password) or _is_a_run(password):
            raise ValidationError(self.message, code="password_pattern")

    def get_help_text(self) -> str:
        return "Your password can't be a repeated or consecutive pattern of characters."


def _is_periodic(text: str) -> bool:
    """Whether the text is its first few characters over and over (the last time cut short)."""
    return any(text[period:] == text[:-period] for period in range(1, len(text) // 2 + 1))


def _is_a_run(text: str) -> bool:
    steps = {ord(after) - ord(before) for before, after in pairwise(text)}
    return steps in ({1}, {-1})
