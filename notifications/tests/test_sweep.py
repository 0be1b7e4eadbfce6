"""The worker's sweep sends the account notices whose queued message never came."""

import smtplib
import threading
import time
from datetime import timedelta
from unittest import mock

import psycopg2
import pytest
from anymail.exceptions import AnymailRecipientsRefused
from django.core import mail
from django.db import OperationalError, ProgrammingError, connection, connections
from django.utils import timezone

from notifications import services
from notifications.models import PasswordChangedNotice
from notifications.sweep import notices_sweep, start

AFTER = timedelta(minutes=2)


def owed(user, *, minutes_ago: float) -> PasswordChangedNotice:
    notice = services.password_changed_notice_record(user=user)
    notice.created_at = timezone.now() - timedelta(minutes=minutes_ago)
    notice.save(update_fields=["created_at"])
    return notice


@pytest.mark.django_db
def test_sweep_sends_the_notices_left_behind_and_not_the_fresh_ones(make_user):
    left_behind = make_user(email="left@example.com")
    fresh = make_user(email="fresh@example.com")
    owed(left_behind, minutes_ago=5)
    waiting = owed(fresh, minutes_ago=0.5)  # its queued message may still be on its way

    assert notices_sweep(older_than=AFTER) == 1

    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["left@example.com"], "Your password was changed")
    ]
    assert list(PasswordChangedNotice.objects.all()) == [waiting]


@pytest.mark.django_db
def test_sweep_sends_password_notices_while_the_email_changed_table_is_missing(user, caplog):
    # The worker of this release started before its migration ran (the migrate step failed)
    owed(user, minutes_ago=5)
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE notifications_emailchangednotice RENAME TO emailchangednotice_away"
        )

    assert notices_sweep(older_than=AFTER) == 1

    assert [m.subject for m in mail.outbox] == ["Your password was changed"]
    assert "EmailChangedNotice unreadable: ProgrammingError; the other kinds go on" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_sweep_fails_at_once_when_its_connection_is_lost(user, caplog):
    # Not an unreadable table: nothing is sent on a second connection, nothing is skipped
    owed(user, minutes_ago=5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    other = connections.create_connection("default")
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    other.close()

    with pytest.raises(OperationalError):
        notices_sweep(older_than=AFTER)

    assert "unreadable" not in caplog.text
    connection.close()
    assert PasswordChangedNotice.objects.count() == 1


@pytest.mark.django_db
def test_sweep_fails_when_no_notice_table_can_be_read(user):
    owed(user, minutes_ago=5)
    with connection.cursor() as cursor:
        for table in ("passwordchangednotice", "emailchangednotice"):
            cursor.execute(f"ALTER TABLE notifications_{table} RENAME TO {table}_away")

    with pytest.raises(ProgrammingError):
        notices_sweep(older_than=AFTER)

    assert mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_notice_another_sender_is_sending_is_not_sent_again(user, settings):
    notice = owed(user, minutes_ago=5)
    # Another worker holds the notice's row: it is sending that email right now.
    database = settings.DATABASES["default"]
    other = psycopg2.connect(
        dbname=connection.settings_dict["NAME"],
        user=database["USER"],
        host=database["HOST"],
        port=database["PORT"],
    )
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM notifications_passwordchangednotice WHERE id = %s FOR UPDATE",
                [notice.pk],
            )
            assert notices_sweep(older_than=AFTER) == 0
            assert services.password_changed_notice_deliver(notice_id=notice.pk) is False
    finally:
        other.rollback()
        other.close()

    assert mail.outbox == []
    # The other sender failed and let go: the notice is still owed, and goes out now.
    assert notices_sweep(older_than=AFTER) == 1


@pytest.mark.django_db
def test_sweep_keeps_every_notice_while_the_mail_server_is_down(make_user):
    for index in range(3):
        owed(make_user(email=f"user{index}@example.com"), minutes_ago=5)

    with mock.patch(
        "notifications.emails.email_send", side_effect=smtplib.SMTPServerDisconnected
    ) as send:
        assert notices_sweep(older_than=AFTER) == 0

    assert send.call_count == 1  # the rest would fail alike: tried again next sweep
    assert PasswordChangedNotice.objects.count() == 3


@pytest.mark.django_db
def test_sweep_keeps_every_notice_and_stops_when_every_send_fails_unexpectedly(make_user, caplog):
    for index in range(5):
        owed(make_user(email=f"user{index}@example.com"), minutes_ago=5)

    with mock.patch("notifications.emails.email_send", side_effect=ValueError("a bug")) as send:
        assert notices_sweep(older_than=AFTER) == 0

    assert send.call_count == 3  # a bug of ours fails them all alike: tried again next sweep
    assert PasswordChangedNotice.objects.count() == 5
    assert "notice sweep: unexpected ValueError sending PasswordChangedNotice" in caplog.text


@pytest.mark.django_db
def test_a_notice_that_fails_unexpectedly_does_not_hold_up_the_ones_behind_it(make_user):
    # The oldest notice's data trips an error of ours; it is kept and the others go out
    stuck = owed(make_user(email="stuck@example.com"), minutes_ago=9)
    for index in range(2):
        owed(make_user(email=f"user{index}@example.com"), minutes_ago=5)
    real_send = services.emails.account_notice_send

    def send(*, kind, to):
        if to == "stuck@example.com":
            raise ValueError("this notice's data")
        real_send(kind=kind, to=to)

    with mock.patch.object(services.emails, "account_notice_send", side_effect=send):
        for _ in range(2):
            notices_sweep(older_than=AFTER)

    assert sorted(m.to[0] for m in mail.outbox) == ["user0@example.com", "user1@example.com"]
    assert list(PasswordChangedNotice.objects.all()) == [stuck]


@pytest.mark.django_db
def test_sweep_gives_up_a_notice_the_provider_refuses(user, caplog):
    owed(user, minutes_ago=5)

    with mock.patch(
        "notifications.emails.email_send", side_effect=AnymailRecipientsRefused("refused")
    ):
        notices_sweep(older_than=AFTER)

    assert not PasswordChangedNotice.objects.exists()
    assert "giving up PasswordChangedNotice" in caplog.text
    assert user.email not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_stopping_the_sweep_waits_for_the_notice_being_sent_and_sends_no_more(make_user, settings):
    # Given the sweep is sending the first of three notices when the worker shuts down
    settings.NOTICE_SWEEP_INTERVAL = 0.01
    for number in range(3):
        owed(make_user(email=f"user{number}@example.com"), minutes_ago=5 - number)
    sending, sent = threading.Event(), []

    def slow_send(*, model, notice_id):
        sending.set()
        time.sleep(0.3)
        sent.append(notice_id)
        return 1

    with mock.patch.object(services, "owed_notice_deliver", slow_send):
        sweep = start()
        assert sending.wait(5)
        sweep.stop(timeout=5)

    # Then that send was finished, not cut off, and the rest wait for the next worker
    assert len(sent) == 1
    assert not sweep._thread.is_alive()
