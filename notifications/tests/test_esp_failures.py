"""The email provider fails: an email is retried in time, or dropped for good, quietly, and
only when the provider refuses its recipient.

Production sends through Postmark's HTTP API with django-anymail; the one thing mocked here is
that API (``requests``), so anymail's real error handling decides what the task sees.
"""

import json
from datetime import timedelta
from unittest import mock

import pytest
import requests

from accounts import reset_tokens
from notifications import tasks
from notifications.models import PasswordChangedNotice
from notifications.sweep import notices_sweep
from notifications.tests.owed import notices_owed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]

SERVER_TOKEN = "postmark-server-token-0123456789"  # noqa: S105 - a fake credential to hunt for
ACCEPTED = (200, {"ErrorCode": 0, "Message": "OK", "MessageID": "b7bc2f4a", "To": "TO"})
UNAVAILABLE = (503, {"ErrorCode": 100, "Message": "Maintenance"})
RATE_LIMITED = (429, {"ErrorCode": 429, "Message": "Rate limit exceeded"})
BAD_TOKEN = (401, {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."})
SUSPENDED = (422, {"ErrorCode": 412, "Message": "Your account is pending approval."})
BAD_SENDER = (
    422,
    {
        "ErrorCode": 400,
        "Message": "The 'From' address you supplied is not a Sender Signature on your account.",
    },
)
INVALID_TO = (422, {"ErrorCode": 300, "Message": "Invalid 'To' address: 'TO'."})
INACTIVE_TO = (
    422,
    {
        "ErrorCode": 406,
        "Message": "You tried to send to a recipient that has been marked as inactive.\n"
        "Found inactive addresses: TO.\nInactive recipients are ones that have generated a "
        "hard bounce or a spam complaint.",
    },
)
NETWORK_DOWN = requests.ConnectionError("connection reset by peer")
SWEEP_AFTER = timedelta(minutes=2)


@pytest.fixture(autouse=True)
def postmark(settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": SERVER_TOKEN}


@pytest.fixture
def esp():
    """Postmark's API, answering each POST with the next scripted reply (TO: its recipient)."""

    class Script:
        def __init__(self):
            self.replies: list = []
            self.requests: list = []

        def __call__(self, method, url, **kwargs):
            self.requests.append(kwargs)
            reply = self.replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            status, body = reply
            response = requests.Response()
            response.status_code = status
            response.url = url
            response.headers["Content-Type"] = "application/json"
            recipient = json.loads(kwargs["data"])["To"]
            response._content = json.dumps(body).replace("TO", recipient).encode()
            return response

    script = Script()
    with mock.patch("requests.Session.request", side_effect=script):
        yield script


@pytest.fixture
def delays():
    """The backoff delays the task asks for (the real ones; eager mode just doesn't wait)."""
    asked: list[float] = []
    real = tasks.retry_delay

    def spy(attempt: int) -> float:
        asked.append(real(attempt))
        return asked[-1]

    with mock.patch.object(tasks, "retry_delay", spy):
        yield asked


def send_reset_email(user) -> reset_tokens.IssuedToken:
    issued = reset_tokens.token_issue(user=user)
    tasks.send_password_reset_email.delay(user.pk, issued.nonce)
    return issued


def assert_no_secrets(text: str, *, user, issued) -> None:
    for secret in (SERVER_TOKEN, issued.token, issued.nonce, user.email):
        assert secret not in text


def test_each_call_to_the_provider_gives_up_after_email_timeout(user, esp, settings):
    esp.replies = [ACCEPTED]

    send_reset_email(user)

    assert esp.requests[0]["timeout"] == settings.EMAIL_TIMEOUT == 10


@pytest.mark.parametrize("failure", [UNAVAILABLE, RATE_LIMITED, NETWORK_DOWN])
def test_transient_provider_failures_are_retried_with_backoff_until_sent(
    user, esp, delays, caplog, settings, failure
):
    # Given Postmark fails twice in a way that passes
    esp.replies = [failure, failure, ACCEPTED]
    caplog.set_level("INFO")

    # When the worker sends a reset email
    issued = send_reset_email(user)

    # Then it tries again with growing waits that fit in the link's life, and sends it once
    assert len(esp.requests) == 3
    assert json.loads(esp.requests[-1]["data"])["To"] == user.email
    assert len(delays) == 2
    assert sum(delays) < settings.PASSWORD_RESET_TIMEOUT
    assert "transient AnymailRequestsAPIError, retry 2 of 5" in caplog.text
    assert "password reset: email sent" in caplog.text
    assert_no_secrets(caplog.text, user=user, issued=issued)


def test_a_provider_that_stays_down_is_given_up_on_inside_the_links_life(
    user, esp, delays, caplog, settings
):
    esp.replies = [UNAVAILABLE] * (tasks.MAX_RETRIES + 1)
    caplog.set_level("INFO")

    issued = send_reset_email(user)

    assert len(esp.requests) == tasks.MAX_RETRIES + 1
    assert sum(delays) < settings.PASSWORD_RESET_TIMEOUT
    assert f"giving up after {tasks.MAX_RETRIES + 1} attempt(s)" in caplog.text
    assert_no_secrets(caplog.text, user=user, issued=issued)


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (INVALID_TO, "AnymailRecipientsRefused"),
        (INACTIVE_TO, "AnymailRecipientsRefused"),
    ],
)
def test_a_refused_recipient_is_not_retried_and_logged_without_secrets(
    user, esp, delays, caplog, failure, error
):
    # Given Postmark refuses the recipient
    esp.replies = [failure]
    caplog.set_level("INFO")

    # When the worker sends a reset email
    issued = send_reset_email(user)

    # Then it gives up at once, saying why by error type only
    assert len(esp.requests) == 1
    assert delays == []
    assert f"giving up after 1 attempt(s): {error}" in caplog.text
    assert_no_secrets(caplog.text, user=user, issued=issued)


@pytest.mark.parametrize("failure", [BAD_TOKEN, SUSPENDED, BAD_SENDER])
def test_a_refused_account_is_retried_as_an_error_until_someone_fixes_it(
    user, esp, delays, caplog, settings, failure
):
    # Given Postmark refuses the server token or the account, and the token is then replaced
    esp.replies = [failure, failure, ACCEPTED]
    caplog.set_level("INFO")

    # When the worker sends a reset email
    issued = send_reset_email(user)

    # Then each refusal is logged as an error for someone to act on, and the link still goes
    # out in time once the account is fixed
    assert len(esp.requests) == 3
    assert sum(delays) < settings.PASSWORD_RESET_TIMEOUT
    refusals = [record for record in caplog.records if "refuses the account" in record.message]
    assert [record.levelname for record in refusals] == ["ERROR", "ERROR"]
    assert "password reset: email sent" in caplog.text
    assert_no_secrets(caplog.text, user=user, issued=issued)


def test_a_missing_provider_setting_is_retried_as_an_error(user, esp, delays, settings, caplog):
    settings.ANYMAIL = {}
    caplog.set_level("INFO")

    issued = send_reset_email(user)

    assert esp.requests == []
    assert len(delays) == tasks.MAX_RETRIES
    assert "AnymailConfigurationError, the email provider refuses the account" in caplog.text
    assert f"giving up after {tasks.MAX_RETRIES + 1} attempt(s)" in caplog.text
    assert_no_secrets(caplog.text, user=user, issued=issued)


@pytest.mark.parametrize("failure", [BAD_TOKEN, SUSPENDED, BAD_SENDER, UNAVAILABLE])
def test_sweep_keeps_every_notice_while_the_provider_refuses_the_account(
    make_user, esp, caplog, failure
):
    # Given two notices an hour old, and Postmark refusing the account (or down)
    notices_owed(make_user, 2)
    esp.replies = [failure]

    # When the worker sweeps
    assert notices_sweep(older_than=SWEEP_AFTER) == 0

    # Then it stops at the first refusal and keeps both for the next sweep
    assert len(esp.requests) == 1
    assert PasswordChangedNotice.objects.count() == 2
    assert "example.com" not in caplog.text
    assert SERVER_TOKEN not in caplog.text

    # And once the account is fixed, the next sweep sends both
    esp.replies = [ACCEPTED, ACCEPTED]
    assert notices_sweep(older_than=SWEEP_AFTER) == 2
    assert not PasswordChangedNotice.objects.exists()


def test_sweep_says_so_as_an_error_when_the_account_is_refused(make_user, esp, caplog):
    notices_owed(make_user, 2)
    esp.replies = [BAD_TOKEN]

    notices_sweep(older_than=SWEEP_AFTER)

    (record,) = [record for record in caplog.records if record.name == "notifications.sweep"]
    assert record.levelname == "ERROR"
    assert "refuses the account or settings; notices kept" in record.message


def test_sweep_keeps_every_notice_while_a_provider_setting_is_missing(make_user, esp, settings):
    notices_owed(make_user, 2)
    settings.ANYMAIL = {}

    assert notices_sweep(older_than=SWEEP_AFTER) == 0

    assert esp.requests == []
    assert PasswordChangedNotice.objects.count() == 2


def test_sweep_gives_up_only_the_notice_whose_recipient_is_refused(make_user, esp, caplog):
    # Given two notices, the older one to an address Postmark marked inactive
    inactive, other = notices_owed(make_user, 2)
    esp.replies = [INACTIVE_TO, ACCEPTED]

    # When the worker sweeps
    assert notices_sweep(older_than=SWEEP_AFTER) == 1

    # Then that one is given up and the other still sent
    assert len(esp.requests) == 2
    assert not PasswordChangedNotice.objects.exists()
    assert f"giving up PasswordChangedNotice {inactive.pk}: AnymailRecipientsRefused" in caplog.text
