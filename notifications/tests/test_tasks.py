"""The worker's side: what it sends, what it refuses to send, and how it retries."""

import errno
import smtplib
import socket
import ssl
import time
from unittest import mock

import pytest
from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailImproperlyInstalled,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
)
from celery.exceptions import Reject
from django.core import mail
from django.db import IntegrityError, OperationalError
from kombu.exceptions import OperationalError as BrokerError
from redis import exceptions as redis_errors

from accounts import reset_tokens
from accounts import services as services_accounts
from auth_service.celery import app as celery_app
from notifications import services, tasks
from notifications.models import PasswordChangedNotice

pytestmark = pytest.mark.django_db


def test_deliver_sends_the_link_for_the_live_token(user):
    issued = reset_tokens.token_issue(user=user)

    assert services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)

    assert len(mail.outbox) == 1
    assert issued.token in mail.outbox[0].body


@pytest.mark.parametrize(
    ("configured", "link"),
    [
        ("http://testserver/reset-password/", "http://testserver/reset-password/?token=abc"),
        (
            "https://app.example.com/reset?lang=en",
            "https://app.example.com/reset?lang=en&token=abc",
        ),
        ("https://app.example.com/#/reset", "https://app.example.com/?token=abc#/reset"),
        (
            "https://app.example.com/?lang=en#/reset",
            "https://app.example.com/?lang=en&token=abc#/reset",
        ),
        (
            "https://app.example.com/reset?token=old&lang=en",
            "https://app.example.com/reset?lang=en&token=abc",
        ),
        # the rest of the query as written, whatever a front end makes of it
        (
            "https://app.example.com/reset?embedded&campaign=caf%E9&a=1;b=2&next=/home",
            "https://app.example.com/reset?embedded&campaign=caf%E9&a=1;b=2&next=/home&token=abc",
        ),
        ("https://app.example.com/reset?%74oken=old", "https://app.example.com/reset?token=abc"),
    ],
)
def test_link_adds_the_token_to_the_configured_url(settings, configured, link):
    settings.PASSWORD_RESET_URL = configured

    assert services.password_reset_link(token="abc") == link


def test_deliver_keeps_the_query_of_the_configured_url(user, settings):
    settings.PASSWORD_RESET_URL = "https://app.example.com/reset?lang=en"
    issued = reset_tokens.token_issue(user=user)

    services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)

    assert f"https://app.example.com/reset?lang=en&token={issued.token}\n" in mail.outbox[0].body


def test_redelivered_message_does_not_email_twice(user):
    issued = reset_tokens.token_issue(user=user)

    services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)
    again = services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)

    assert not again
    assert len(mail.outbox) == 1


def test_replaced_token_sends_nothing_and_says_why(user, caplog):
    stale = reset_tokens.token_issue(user=user)
    reset_tokens.token_issue(user=user)

    caplog.set_level("INFO")
    assert not services.password_reset_deliver(user_id=user.pk, nonce=stale.nonce)

    assert mail.outbox == []
    assert "expired, used or replaced" in caplog.text
    assert stale.token not in caplog.text


def test_expired_token_sends_nothing(user, redis_client):
    issued = reset_tokens.token_issue(user=user)
    for key in redis_client.scan_iter(f"{reset_tokens.PREFIX}*"):
        redis_client.delete(key)  # what the expiry does to each of them

    assert not services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)
    assert mail.outbox == []


def test_a_link_is_sent_while_a_newer_request_is_still_queuing_its_own(user):
    issued = reset_tokens.token_issue(user=user)

    # A newer forgot has stored its token but not yet queued its email, which may yet fail
    with reset_tokens.token_replacing(user_id=user.pk, binding=reset_tokens.binding(user)):
        sent = services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)

    # The link still worked when its email went out, so it went out
    assert sent
    assert issued.token in mail.outbox[0].body


def test_a_link_outdated_by_a_password_change_is_not_sent_even_if_redis_kept_it(user, monkeypatch):
    issued = reset_tokens.token_issue(user=user)
    # The change commits, but Redis cannot forget the user's links
    monkeypatch.setattr(
        reset_tokens, "token_revoke", mock.Mock(side_effect=redis_errors.ConnectionError("down"))
    )
    services_accounts.password_set(user=user, password="another long passphrase")
    mail.outbox.clear()

    assert not services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)
    assert mail.outbox == []


def test_deactivated_user_gets_nothing(make_user):
    user = make_user(is_active=False)
    issued = reset_tokens.token_issue(user=user)

    assert not services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)
    assert mail.outbox == []


REFUSED, DEFERRED, OUTAGE, ACCOUNT, UNEXPECTED = (
    tasks.Failure.REFUSED,
    tasks.Failure.DEFERRED,
    tasks.Failure.OUTAGE,
    tasks.Failure.ACCOUNT,
    tasks.Failure.UNEXPECTED,
)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (smtplib.SMTPServerDisconnected("gone"), OUTAGE),
        (smtplib.SMTPResponseException(421, b"try later"), OUTAGE),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (450, b"greylisted")}), DEFERRED),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (452, b"mailbox full")}), DEFERRED),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no such user")}), REFUSED),
        (smtplib.SMTPRecipientsRefused({}), REFUSED),
        (smtplib.SMTPDataError(451, b"try later"), OUTAGE),
        (smtplib.SMTPDataError(554, b"message refused"), REFUSED),
        (smtplib.SMTPDataError(550, b"5.1.1 no such mailbox"), REFUSED),
        # Policy (RFC 3463 class 7: SPF, DMARC, a blocked sending address): every email alike
        (smtplib.SMTPDataError(550, b"5.7.1 rejected by DMARC policy"), ACCOUNT),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (554, b"5.7.1 Relay denied")}), ACCOUNT),
        # No reply yet: a name that does not resolve, a network out of reach, TLS broken off
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), OUTAGE),
        (socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure in name resolution"), OUTAGE),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), OUTAGE),
        (OSError(errno.EHOSTUNREACH, "No route to host"), OUTAGE),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), OUTAGE),
        # Our settings, which no wait mends: a mistyped host, TLS against the wrong port or a
        # certificate that does not verify
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), ACCOUNT),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), ACCOUNT),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), ACCOUNT),
        (FileNotFoundError(errno.ENOENT, "No such file"), UNEXPECTED),
        (smtplib.SMTPSenderRefused(451, b"try later", "no-reply@example.com"), OUTAGE),
        (smtplib.SMTPSenderRefused(553, b"not yours", "no-reply@example.com"), ACCOUNT),
        (smtplib.SMTPAuthenticationError(454, b"temporary authentication failure"), OUTAGE),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), ACCOUNT),
        (smtplib.SMTPConnectError(554, b"no service for you"), ACCOUNT),
        (smtplib.SMTPResponseException(554, b"rejected"), ACCOUNT),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), ACCOUNT),
        (ConnectionRefusedError(), OUTAGE),
        (OperationalError("connection to server failed"), OUTAGE),
        (IntegrityError("duplicate key"), UNEXPECTED),
        (TimeoutError(), OUTAGE),
        (AnymailRequestsAPIError(status_code=503), OUTAGE),
        (AnymailRequestsAPIError(status_code=429), OUTAGE),
        (AnymailRequestsAPIError(status_code=401), ACCOUNT),
        (AnymailRequestsAPIError(status_code=403), ACCOUNT),
        (AnymailRequestsAPIError(status_code=422), ACCOUNT),
        (AnymailAPIError("an error this provider's backend raises"), ACCOUNT),
        (AnymailConfigurationError("missing POSTMARK_SERVER_TOKEN"), ACCOUNT),
        (AnymailImproperlyInstalled(missing_package="boto3"), ACCOUNT),
        (AnymailRecipientsRefused(), REFUSED),
        (AnymailInvalidAddress("not an address"), REFUSED),
        (ValueError("bug"), UNEXPECTED),
        (redis_errors.ConnectionError("refused"), OUTAGE),
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), OUTAGE),
        (redis_errors.ResponseError("BUSY Redis is busy running a script."), OUTAGE),
        (redis_errors.ResponseError("MISCONF Redis is configured to save RDB snapshots"), OUTAGE),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key"), UNEXPECTED),
        (BrokerError("broker refused"), OUTAGE),
    ],
)
def test_errors_are_sorted_by_whose_they_are(error, kind):
    assert tasks.failure_kind(error) is kind


def test_backoff_outlasts_a_short_outage_and_stays_inside_the_token_lifetime(settings):
    waits = [[tasks.retry_delay(n) for n in range(tasks.MAX_RETRIES)] for _ in range(200)]
    bases = [
        min(tasks.RETRY_MAX_DELAY, tasks.RETRY_BASE_DELAY * 2**n) for n in range(tasks.MAX_RETRIES)
    ]

    # Each wait lies between its base and half again, so the retries span minutes, not seconds
    for one_task in waits:
        assert all(base <= wait <= 1.5 * base for base, wait in zip(bases, one_task, strict=True))
    assert min(sum(one_task) for one_task in waits) >= 4 * 60
    # The longest waits, and every attempt timing out both connecting and reading, still end
    # inside the link's life
    attempts = tasks.MAX_RETRIES + 1
    worst = 1.5 * sum(bases) + attempts * 2 * settings.EMAIL_TIMEOUT
    assert worst < settings.PASSWORD_RESET_TIMEOUT
    # A task held for its countdown is not handed out again meanwhile
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert 1.5 * tasks.RETRY_MAX_DELAY < visibility < settings.PASSWORD_RESET_TIMEOUT


@pytest.mark.usefixtures("eager_tasks")
def test_transient_failure_is_retried_then_delivered(user):
    issued = reset_tokens.token_issue(user=user)
    real_send = services.emails.password_reset_email_send
    calls = []

    def flaky(**kwargs):
        calls.append(1)
        if len(calls) < 3:
            raise smtplib.SMTPServerDisconnected("connection dropped")
        real_send(**kwargs)

    with (
        mock.patch.object(services.emails, "password_reset_email_send", flaky),
        mock.patch.object(tasks, "retry_delay", return_value=0),
    ):
        tasks.send_password_reset_email.delay(user.pk, issued.nonce)

    assert len(calls) == 3
    assert len(mail.outbox) == 1


def test_a_retry_the_broker_cannot_take_puts_the_message_back_rather_than_dropping_it(user):
    # Given a worker running a reset email (not eagerly: as from the queue) whose send fails for
    # now, while the broker refuses the retry's message for a moment
    issued = reset_tokens.token_issue(user=user)
    task = tasks.send_password_reset_email._get_current_object()
    task.push_request(
        id="reset-email-1",
        args=[user.pk, issued.nonce],
        kwargs={},
        retries=0,
        is_eager=False,
        called_directly=False,
        delivery_info={},
    )
    dropped = smtplib.SMTPServerDisconnected("connection dropped")
    try:
        with (
            mock.patch.object(services.emails, "password_reset_email_send", side_effect=dropped),
            mock.patch.object(task, "apply_async", side_effect=BrokerError("refused")),
            pytest.raises(Reject) as rejected,
        ):
            # When it tries to schedule the retry
            task.run(user.pk, issued.nonce)
    finally:
        task.pop_request()

    # Then the message goes back to the queue for a later try, not dropped with the email
    assert rejected.value.requeue
    assert mail.outbox == []


@pytest.mark.usefixtures("eager_tasks")
def test_permanent_failure_is_not_retried_and_logged_without_secrets(user, caplog):
    issued = reset_tokens.token_issue(user=user)
    calls = []

    def refuse(**kwargs):
        calls.append(1)
        raise smtplib.SMTPRecipientsRefused({user.email: (550, b"no such user")})

    caplog.set_level("INFO")
    with mock.patch.object(services.emails, "password_reset_email_send", refuse):
        tasks.send_password_reset_email.delay(user.pk, issued.nonce)

    assert len(calls) == 1
    assert "giving up after 1 attempt(s): SMTPRecipientsRefused" in caplog.text
    assert issued.token not in caplog.text
    assert user.email not in caplog.text


@pytest.mark.usefixtures("eager_tasks")
def test_redelivered_password_changed_notice_does_not_email_twice(user):
    # A task that finished while its worker shut down can be delivered again with the same id.
    notice = services.password_changed_notice_record(user=user)
    tasks.send_password_changed_notice.apply(args=[notice.pk], task_id="one-message")
    tasks.send_password_changed_notice.apply(args=[notice.pk], task_id="one-message")

    assert [m.subject for m in mail.outbox] == ["Your password was changed"]
    assert mail.outbox[0].to == [user.email]
    assert not PasswordChangedNotice.objects.exists()


@pytest.mark.usefixtures("eager_tasks")
def test_each_password_change_gets_its_own_notice(user):
    for _ in range(2):
        services_accounts.password_set(user=user, password="another long passphrase")

    assert [m.subject for m in mail.outbox] == ["Your password was changed"] * 2
    assert not PasswordChangedNotice.objects.exists()


def test_notice_that_cannot_be_sent_yet_is_kept_for_later(user):
    notice = services.password_changed_notice_record(user=user)

    with (
        mock.patch("notifications.emails.email_send", side_effect=smtplib.SMTPServerDisconnected),
        pytest.raises(smtplib.SMTPServerDisconnected),
    ):
        services.password_changed_notice_deliver(notice_id=notice.pk)

    assert PasswordChangedNotice.objects.filter(pk=notice.pk).exists()
    assert services.password_changed_notice_deliver(notice_id=notice.pk)
    assert len(mail.outbox) == 1


def test_a_notice_sent_whose_deletion_failed_is_not_sent_again(user, monkeypatch):
    # The email goes out, then the database connection drops before the notice is deleted
    notice = services.password_changed_notice_record(user=user)
    real_delete = PasswordChangedNotice.delete
    calls = []

    def delete_fails_once(self, *args, **kwargs):
        calls.append(self.pk)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real_delete(self, *args, **kwargs)

    monkeypatch.setattr(PasswordChangedNotice, "delete", delete_fails_once)
    with pytest.raises(OperationalError):
        services.password_changed_notice_deliver(notice_id=notice.pk)
    assert PasswordChangedNotice.objects.filter(pk=notice.pk).exists()  # kept for a retry

    # The retry (or the sweep) finds it sent: it forgets the notice and sends nothing more
    assert not services.password_changed_notice_deliver(notice_id=notice.pk)
    assert [m.subject for m in mail.outbox] == ["Your password was changed"]
    assert not PasswordChangedNotice.objects.exists()


def test_a_notice_reusing_the_id_of_one_sent_is_sent_too(user):
    # A database restored from a backup hands out ids again
    first = services.password_changed_notice_record(user=user)
    assert services.password_changed_notice_deliver(notice_id=first.pk)
    again = PasswordChangedNotice.objects.create(pk=first.pk, user=user)

    assert services.password_changed_notice_deliver(notice_id=again.pk)
    assert len(mail.outbox) == 2


def test_a_notice_is_sent_when_redis_cannot_say_whether_it_was(user, monkeypatch):
    notice = services.password_changed_notice_record(user=user)
    down = redis_errors.ConnectionError("down")
    monkeypatch.setattr("auth_service.redis_client.client", mock.Mock(side_effect=down))

    assert services.password_changed_notice_deliver(notice_id=notice.pk)
    assert len(mail.outbox) == 1
    assert not PasswordChangedNotice.objects.exists()


def test_publishing_to_a_broker_that_refuses_connections_fails_at_once():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    broker = celery_app.connection_for_write(f"redis://127.0.0.1:{closed_port}/0")

    started = time.monotonic()
    with pytest.raises(BrokerError), broker:
        tasks.send_password_reset_email.apply_async((1, "nonce"), connection=broker)

    # The forgot request waiting on it answers 503 this promptly (kombu alone retries for 2 s).
    assert time.monotonic() - started < 1
