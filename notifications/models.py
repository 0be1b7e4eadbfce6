"""Notices owed to users, kept in PostgreSQL until they are sent."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class AccountNotice(models.Model):
    """A security email still to send: "your password was changed", or "the email address of
    your account was changed" (to the old address).

    Written in the transaction that makes the change, so an outage of the queue cannot lose
    it, and deleted in the transaction that sends it. The queued task normally sends it within
    milliseconds; the worker's sweep (notifications.sweep) sends any left behind.
    """

    class Kind(models.TextChoices):
        PASSWORD_CHANGED = "password_changed", "password changed"
        EMAIL_CHANGED = "email_changed", "email changed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Defaults in the database too: the release before this one inserts rows without these
    # columns while a deploy replaces it.
    kind = models.CharField(
        max_length=20,
        choices=Kind.choices,
        default=Kind.PASSWORD_CHANGED,
        db_default=Kind.PASSWORD_CHANGED,
    )
    # Where it goes when not to the account's address as it is at sending: the old address,
    # for an email change (the new one is the account's own).
    address = models.EmailField(max_length=254, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # When the sweep last tried it and kept it (this recipient deferred or refused by policy,
    # or an error of ours): the next sweeps try the others first.
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table the notices had as password-changed notices alone: renaming it would break
        # the release still running while a deploy migrates.
        db_table = "notifications_passwordchangednotice"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} notice {self.pk} for user {self.user_id}"
