"""Notices owed to users, kept in PostgreSQL until they are sent."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class OwedNotice(models.Model):
    """A security email still to send.

    Written in the transaction that makes the change, so an outage of the queue cannot lose
    it, and deleted in the transaction that sends it. The queued task normally sends it within
    milliseconds; the worker's sweep (notifications.sweep) sends any left behind.

    Each kind has its own table, read by its own task: a worker of an older release, still
    running while a deploy replaces it, never takes a kind it does not know for another.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # When the sweep last tried it and kept it (this recipient deferred or refused by policy,
    # or an error of ours): the next sweeps try the others first.
    failed_at = models.DateTimeField(null=True, blank=True)

    # What it says: the name of its email's templates (notifications/templates/notifications).
    kind: str

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.kind} notice {self.pk} for user {self.user_id}"

    def recipient(self) -> str:
        return self.user.email


class PasswordChangedNotice(OwedNotice):
    """ "Your password was changed", to the account's address as it is at sending."""

    class Kind(models.TextChoices):
        PASSWORD_CHANGED = "password_changed", "password changed"
        EMAIL_CHANGED = "email_changed", "email changed"

    # Columns of the one release that kept both kinds in this table: its web may still insert
    # an email-changed notice here while a deploy replaces it, and it is sent as such.
    # Migration 0004 moved those already here. Drop both once no running release writes them,
    # in a migration that first moves any kind="email_changed" row still here (one locked by its
    # sender during 0004, or inserted by the release before during the deploy): with this table
    # locked, waiting for its senders, not skipping their rows as 0004 could.
    kind = models.CharField(
        max_length=20,
        choices=Kind.choices,
        default=Kind.PASSWORD_CHANGED,
        db_default=Kind.PASSWORD_CHANGED,
    )
    address = models.EmailField(max_length=254, blank=True, default="", db_default="")

    class Meta:
        db_table = "notifications_passwordchangednotice"

    def recipient(self) -> str:
        return self.address or self.user.email


class EmailChangedNotice(OwedNotice):
    """ "The email address of your account was changed", to the address the account left (the
    account's own is the new one)."""

    address = models.EmailField(max_length=254)

    kind = "email_changed"

    def recipient(self) -> str:
        return self.address
