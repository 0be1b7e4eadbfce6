"""The mail server says "not now" or "no": the worker reads the reply code, and whose it is.

A real SMTP server on a local port answers each step (MAIL FROM, RCPT TO, DATA) as scripted;
Django's SMTP backend and smtplib decide what the task and the sweep see.
"""

from datetime import timedelta
from unittest import mock

import pytest

from accounts import reset_tokens
from notifications import services, tasks
from notifications.models import PasswordChangedNotice
from notifications.sweep import notices_sweep
from notifications.tests.owed import notices_owed
from testing.smtp import RefusingSmtpSink

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]

AFTER = timedelta(minutes=2)


@pytest.fixture
def smtp(settings):
    sink = RefusingSmtpSink()
    sink.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = sink.port
    settings.EMAIL_USE_TLS = False
    yield sink
    sink.stop()


@pytest.fixture(autouse=True)
def no_waits():
    with mock.patch.object(tasks, "retry_delay", return_value=0):
        yield


def service_log(caplog) -> str:
    """What the service logged (the test server's own "mail.log" shows every address)."""
    return "\n".join(record.getMessage() for record in caplog.records if record.name != "mail.log")


def send_reset_email(user) -> None:
    issued = reset_tokens.token_issue(user=user)
    tasks.send_password_reset_email.delay(user.pk, issued.nonce)


@pytest.mark.parametrize(
    ("step", "reply", "error"),
    [
        (
            "RCPT",
            "450 4.2.0 <ada@example.com>: Recipient address rejected: Greylisted",
            "SMTPRecipientsRefused",
        ),
        ("RCPT", "451 4.3.0 Temporary lookup failure", "SMTPRecipientsRefused"),
        ("RCPT", "452 4.2.2 <ada@example.com>: Mailbox full", "SMTPRecipientsRefused"),
        ("MAIL", "451 4.3.0 Sender address temporarily unverifiable", "SMTPSenderRefused"),
        ("DATA", "451 4.7.1 Please try again later", "SMTPDataError"),
    ],
)
def test_a_not_now_from_the_mail_server_is_retried_until_sent(
    user, smtp, caplog, step, reply, error
):
    # Given the mail server answers one step with a 4xx (greylisting, a lookup that failed)
    smtp.replies[step] = [reply]
    caplog.set_level("INFO")

    # When the worker sends a reset email
    send_reset_email(user)

    # Then it tries again, and the email arrives
    assert f"transient {error}, retry 1 of 5" in caplog.text
    assert [message["To"] for message in smtp.messages] == [user.email]


@pytest.mark.parametrize(
    ("step", "reply", "error"),
    [
        (
            "RCPT",
            "550 5.1.1 <ada@example.com>: Recipient address rejected: User unknown",
            "SMTPRecipientsRefused",
        ),
        ("DATA", "550 5.1.1 <ada@example.com>: Mailbox unavailable", "SMTPDataError"),
    ],
)
def test_a_refused_recipient_is_given_up_at_once(user, smtp, caplog, step, reply, error):
    smtp.replies[step] = [reply]

    send_reset_email(user)

    assert f"giving up after 1 attempt(s): {error}" in caplog.text
    assert smtp.messages == []
    assert user.email not in service_log(caplog)


@pytest.mark.parametrize(
    ("task", "record"),
    [
        (
            tasks.send_password_changed_notice,
            lambda user: services.password_changed_notice_record(user=user),
        ),
        (
            tasks.send_email_changed_notice,
            lambda user: services.email_changed_notice_record(user=user, old_email=user.email),
        ),
    ],
)
def test_a_notice_whose_recipient_is_refused_is_given_up_for_good(user, smtp, caplog, task, record):
    # Given a notice whose recipient the mail server refuses
    notice = record(user)
    smtp.replies["RCPT"] = ["550 5.1.1 <ada@example.com>: Recipient address rejected: User unknown"]

    # When its task sends it
    task.delay(notice.pk)

    # Then the notice is over: the sweep does not try that recipient again minutes later
    assert "giving up after 1 attempt(s): SMTPRecipientsRefused" in caplog.text
    assert not type(notice).objects.exists()
    assert notices_sweep(older_than=timedelta(0)) == 0
    assert smtp.messages == []


def test_a_refused_sender_is_an_account_error_retried_until_fixed(user, smtp, caplog):
    # Given the server refuses the sender address (DEFAULT_FROM_EMAIL) twice, then takes it
    smtp.replies["MAIL"] = ["553 5.7.1 Sender address rejected: not owned by user"] * 2

    send_reset_email(user)

    assert "SMTPSenderRefused, the email provider refuses the account or settings" in caplog.text
    assert [message["To"] for message in smtp.messages] == [user.email]


@pytest.mark.parametrize(
    ("step", "reply"),
    [
        ("MAIL", "553 5.7.1 Sender address rejected: not owned by user"),
        ("MAIL", "451 4.3.0 Local error in processing"),
        ("DATA", "451 4.7.1 Please try again later"),
    ],
)
def test_sweep_keeps_every_notice_when_the_server_refuses_the_sender_or_defers(
    make_user, smtp, step, reply
):
    notices_owed(make_user, 2)
    smtp.replies[step] = [reply]

    assert notices_sweep(older_than=AFTER) == 0

    assert PasswordChangedNotice.objects.count() == 2
    assert notices_sweep(older_than=AFTER) == 2


def test_sweep_goes_on_past_a_recipient_the_server_defers(make_user, smtp, caplog):
    # Given two notices, the older one to a recipient the mail server greylists
    deferred, other = notices_owed(make_user, 2)
    smtp.replies["RCPT"] = ["450 4.2.0 <user0@example.com>: Recipient address rejected: Greylisted"]

    # When the worker sweeps
    assert notices_sweep(older_than=AFTER) == 1

    # Then the other notice goes out, and the deferred one waits for the next sweep
    assert [message["To"] for message in smtp.messages] == ["user1@example.com"]
    assert list(PasswordChangedNotice.objects.all()) == [deferred]
    assert f"PasswordChangedNotice {deferred.pk} deferred: SMTPRecipientsRefused" in service_log(
        caplog
    )
    assert "user0@example.com" not in service_log(caplog)
    assert notices_sweep(older_than=AFTER) == 1
    assert not PasswordChangedNotice.objects.exists()


def test_sweep_goes_on_past_a_recipient_the_server_refuses_by_policy(make_user, smtp, caplog):
    # Given three notices, the oldest to a mailbox whose server refuses our mail by policy
    refused, *others = notices_owed(make_user, 3)
    smtp.replies["RCPT"] = ["550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized"]

    # When the worker sweeps
    assert notices_sweep(older_than=AFTER) == 2

    # Then the others go out, and that one is kept (the refusal may be ours to fix)
    assert sorted(message["To"] for message in smtp.messages) == [
        "user1@example.com",
        "user2@example.com",
    ]
    assert list(PasswordChangedNotice.objects.all()) == [refused]
    assert (
        f"policy refusal, SMTPRecipientsRefused sending PasswordChangedNotice {refused.pk}"
        in service_log(caplog)
    )


def test_sweep_stops_when_the_server_refuses_every_recipient_by_policy(make_user, smtp):
    notices_owed(make_user, 5)
    smtp.replies["RCPT"] = ["554 5.7.1 Relay access denied"] * 5

    assert notices_sweep(older_than=AFTER) == 0

    assert len(smtp.replies["RCPT"]) == 2  # three tried, then the sweep stopped
    assert PasswordChangedNotice.objects.count() == 5


def test_notices_a_sweep_kept_are_tried_after_the_others(make_user, smtp):
    # Given three notices the mail server refuses by policy, then two it takes
    notices_owed(make_user, 5)
    smtp.replies["RCPT"] = ["550 5.7.1 not authorized"] * 3

    # When one sweep stops at the three, and the next comes
    assert notices_sweep(older_than=AFTER) == 0
    assert notices_sweep(older_than=AFTER) == 5

    # Then the two no sweep had tried went out first
    assert [message["To"] for message in smtp.messages][:2] == [
        "user3@example.com",
        "user4@example.com",
    ]
