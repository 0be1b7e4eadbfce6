"""The platform's user: identified by email, with a full name instead of first/last names."""

import logging

from asgiref.sync import sync_to_async
from django.contrib.auth import hashers
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import DatabaseError, models
from django.db.models import Value
from django.db.models.functions import Lower

from accounts import lost_answers
from accounts.managers import UserManager, email_stored_form
from accounts.validators import validate_email_characters, validate_full_name

logger = logging.getLogger(__name__)


class User(AbstractUser):
    username = None
    first_name = None
    last_name = None
    email = models.EmailField("email address", unique=True, validators=[validate_email_characters])
    # Register's check of a name (accounts.serializers), which createsuperuser and the admin's
    # forms run as the field's validators.
    full_name = models.CharField("full name", max_length=150, validators=[validate_full_name])

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["full_name"]

    objects = UserManager()

    class Meta:
        constraints = [
            # Guards the lower-case invariant even for rows written around the manager.
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def clean_fields(self, exclude=None):
        exclude = set(exclude or ())
        if "full_name" not in exclude and self._full_name_kept():
            # A name saved before names were checked, left as it is: staff can still save the
            # account otherwise (deactivate it, say). A new or changed name is checked.
            exclude.add("full_name")
        super().clean_fields(exclude=exclude)

    def _full_name_kept(self) -> bool:
        if self._state.adding:
            return False
        stored = type(self)._default_manager.filter(pk=self.pk, full_name=self.full_name)
        return stored.exists()

    def validate_constraints(self, exclude=None):
        # validate_unique reports a taken address on the field, in any letter case; the
        # lower-case constraint would repeat it under its internal name.
        super().validate_constraints(exclude={*(exclude or ()), "email"})

    def validate_unique(self, exclude=None):
        # The field's own check compares exactly; this one compares as the lower-case
        # constraint does, so an address stored in another case (a row written around the
        # model) is a form error, not an IntegrityError at save.
        exclude = set(exclude or ())
        errors = {}
        try:
            super().validate_unique(exclude={*exclude, "email"})
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        if "email" not in exclude and self.email and self._email_taken():
            errors["email"] = [self.unique_error_message(type(self), ("email",))]
        if errors:
            raise ValidationError(errors)

    def _email_taken(self) -> bool:
        others = type(self)._default_manager.alias(email_lower=Lower("email"))
        if not self._state.adding:
            others = others.exclude(pk=self.pk)
        return others.filter(email_lower=Lower(Value(self.email))).exists()

    def clean(self):
        typed = self.email
        kept = (
            not self._state.adding
            and type(self)._default_manager.filter(pk=self.pk, email=typed).exists()
        )
        super().clean()
        if kept:
            # The email as stored, left so: a row from before domains were encoded, whose
            # encoded form another account has (accounts migration 0005), would otherwise be
            # "taken" and staff could not save it at all (deactivate it, say). As a save does.
            self.email = typed
            return
        # Field validation saw the email as typed; encoding its domain lengthens it, as
        # lower-casing does a few letters ("İ").
        stored = email_stored_form(self.email)
        limit = self._meta.get_field("email").max_length
        if len(stored) > limit:
            message = f"Ensure this value has at most {limit} characters (it has {len(stored)})."
            raise ValidationError({"email": message})
        self.email = stored

    # Set when the password is replaced in memory; a save then has Redis forget every emailed
    # reset link (accounts.signals), whoever saves it: the admin, `manage.py changepassword`, a
    # shell. The links stopped working anyway: each is bound to the old hash.
    password_replaced = False
    # The email as stored before a save that writes the email (accounts.signals).
    _email_replaced: str | None = None

    def set_password(self, raw_password: str | None) -> None:
        super().set_password(raw_password)
        self.password_replaced = True

    def set_unusable_password(self) -> None:
        super().set_unusable_password()
        self.password_replaced = True

    def check_password(self, raw_password: str) -> bool:
        """Django's check, but a re-hash with the current parameters is saved only over the hash
        it verified: a reset or change committed while the verify ran must not be overwritten
        with a fresh hash of the old password. Then the old password no longer holds: False.
        """
        verified = self.password
        superseded = False

        def upgrade(raw: str) -> None:
            # Here: auth_service.exceptions loads DRF, whose settings load this module.
            from auth_service.exceptions import HashingBusy

            nonlocal superseded
            try:
                rehashed = hashers.make_password(raw)
            except HashingBusy:
                return  # the password holds; its hash is upgraded on a later sign-in
            try:
                replaced = User.objects.password_replace(self.pk, old=verified, new=rehashed)
            except DatabaseError as error:
                if not lost_answers.refused(error):
                    raise  # the connection failed: the new hash may be stored, or not
                # Refused for now (a standby during a failover, a statement timeout): the
                # password holds, and signing in writes nothing else, so it must not fail.
                logger.warning(
                    "re-hash of user %s left for a later sign-in: %s",
                    self.pk,
                    type(error).__name__,
                )
                return
            if replaced:
                self.password = rehashed
                return
            # Another hash was stored meanwhile. A concurrent sign-in with the same password
            # (a second device, a retry) re-hashing it first leaves the password holding: its
            # hash is the one to go on with, or the tokens issued would not match it. A reset
            # or change to another password does not verify: the old one no longer holds.
            current = User.objects.filter(pk=self.pk).values_list("password", flat=True).first()
            if current is not None and hashers.check_password(raw, current):
                self.password = current
            else:
                superseded = True

        return hashers.check_password(raw_password, verified, upgrade) and not superseded

    async def acheck_password(self, raw_password: str) -> bool:
        return await sync_to_async(self.check_password)(raw_password)

    def get_full_name(self) -> str:
        return self.full_name

    def get_short_name(self) -> str:
        return self.full_name

    def __str__(self) -> str:
        return self.email


class SpentRefreshToken(models.Model):
    """A refresh token that rotation or logout has used up, kept until an hour after it would
    expire anyway (accounts.tokens.SPENT_RECORD_MARGIN).

    Only the token's id is kept, never the token: a copy of this table holds nothing that signs
    anyone in. Tokens that are still usable have no row at all, so logging in writes nothing.
    """

    jti = models.UUIDField("token id", primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField("token expires at")
    spent_at = models.DateTimeField("spent at")
    # The request that spent it (a rotation: its successor's id), so that one whose answer
    # from PostgreSQL was lost can tell it did. Empty on rows from before it was recorded.
    spent_by = models.UUIDField("spent by", null=True, blank=True)

    def __str__(self) -> str:
        return str(self.jti)


class RevokedTokenFamily(models.Model):
    """The tokens descended from one login, ended by its logout, or because a spent refresh
    token among them came back: the client and someone else both hold the chain, and its live
    token may be the other's (accounts.tokens). Its access tokens stop working too. Kept until
    every token of the family has expired.
    """

    family = models.UUIDField("token family id", primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    revoked_at = models.DateTimeField("revoked at")
    expires_at = models.DateTimeField("its tokens expired by")

    def __str__(self) -> str:
        return str(self.family)
