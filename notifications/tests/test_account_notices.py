"""Account notices of both kinds, and the notices of the release before this one."""

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from notifications import services, tasks
from notifications.models import AccountNotice
from notifications.sweep import notices_sweep

pytestmark = pytest.mark.django_db


def test_an_email_changed_notice_goes_to_the_old_address_whatever_the_account_holds_now(user):
    notice = services.email_changed_notice_record(user=user, old_email="ada@example.com")
    user.email = "ada@new-mailbox.example"
    user.save()
    AccountNotice.objects.exclude(pk=notice.pk).delete()  # the save's own notice: not this test's

    assert services.account_notice_deliver(notice_id=notice.pk)

    (message,) = mail.outbox
    assert message.to == ["ada@example.com"]
    assert message.subject == "The email address of your account was changed"
    assert "no longer works" in message.body
    assert not AccountNotice.objects.exists()


def test_the_sweep_sends_an_email_changed_notice_left_behind_to_the_old_address(user):
    # Redis was out when staff moved the account: no message was queued
    user.email = "ada@new-mailbox.example"
    user.save()
    AccountNotice.objects.update(created_at=timezone.now() - timedelta(minutes=5))

    assert notices_sweep(older_than=timedelta(minutes=2)) == 1

    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["ada@example.com"], "The email address of your account was changed")
    ]
    assert not AccountNotice.objects.exists()


def test_a_notice_the_release_before_inserts_during_a_deploy_is_a_password_changed_notice(user):
    # That release knows neither the kind nor the address: the database fills them in
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO notifications_passwordchangednotice (user_id, created_at) "
            "VALUES (%s, now()) RETURNING id",
            [user.pk],
        )
        (notice_id,) = cursor.fetchone()

    notice = AccountNotice.objects.get(pk=notice_id)
    assert (notice.kind, notice.address) == (AccountNotice.Kind.PASSWORD_CHANGED, "")

    assert services.account_notice_deliver(notice_id=notice_id)
    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["ada@example.com"], "Your password was changed")
    ]


def test_a_message_the_release_before_queued_still_sends_its_notice(user):
    # Queued under the task name that release used, read by this release's worker
    notice = services.password_changed_notice_record(user=user)

    tasks.send_password_changed_notice.apply(args=[notice.pk])

    assert tasks.send_password_changed_notice.name == (
        "notifications.tasks.send_password_changed_notice"
    )
    assert [m.subject for m in mail.outbox] == ["Your password was changed"]
    assert not AccountNotice.objects.exists()
