"""Notices the sweep owes: recorded an hour ago, oldest first."""

from datetime import timedelta

from django.utils import timezone

from notifications import services
from notifications.models import PasswordChangedNotice


def notices_owed(make_user, count: int) -> list[PasswordChangedNotice]:
    """`count` notices an hour old, for user0@example.com, user1@example.com, ... in order."""
    notices = []
    for number in range(count):
        notice = services.password_changed_notice_record(
            user=make_user(email=f"user{number}@example.com")
        )
        notice.created_at = timezone.now() - timedelta(hours=1, minutes=-number)
        notice.save(update_fields=["created_at"])
        notices.append(notice)
    return notices
