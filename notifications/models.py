"""Notices owed to users, kept in PostgreSQL until they are sent."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class PasswordChangedNotice(models.Model):
    """A "your password was changed" email still to send.

    Written in the transaction that changes the password, so an outage of the queue cannot
    lose it, and deleted in the transaction that sends it. The queued task normally sends it
    within milliseconds; the worker's sweep (notifications.sweep) sends any left behind.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # When the sweep last tried it and kept it (this recipient deferred or refused by policy,
    # or an error of ours): the next sweeps try the others first.
    failed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"password changed notice {self.pk} for user {self.user_id}"
