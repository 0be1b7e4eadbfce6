"""The email provider fails: the reset email is retried in time, or dropped for good, quietly.

Production sends through Postmark's HTTP API with django-anymail; the one thing mocked here is
that API (``requests``), so anymail's real error handling decides what the task sees.
"""

import json
from unittest import mock

import pytest
import requests

from accounts import reset_tokens
from notifications import tasks

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]

SERVER_TOKEN = "postmark-server-token-0123456789"  # noqa: S105 - a fake credential to hunt for
ACCEPTED = (200, {"ErrorCode": 0, "Message": "OK", "MessageID": "b7bc2f4a", "To": "TO"})
UNAVAILABLE = (503, {"ErrorCode": 100, "Message": "Maintenance"})
RATE_LIMITED = (429, {"ErrorCode": 429, "Message": "Rate limit exceeded"})
BAD_TOKEN = (401, {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."})
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


@pytest.fixture(autouse=True)
def postmark(settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": SERVER_TOKEN}


@pytest.fixture
def esp(user):
    """Postmark's API, answering each POST with the next scripted reply."""

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
            response._content = json.dumps(body).replace("TO", user.email).encode()
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
    issued = reset_tokens.token_issue(user_id=user.pk)
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
        (BAD_TOKEN, "AnymailRequestsAPIError"),
        (INVALID_TO, "AnymailRecipientsRefused"),
        (INACTIVE_TO, "AnymailRecipientsRefused"),
    ],
)
def test_permanent_provider_failures_are_not_retried_and_logged_without_secrets(
    user, esp, delays, caplog, failure, error
):
    # Given Postmark refuses the credentials or the recipient
    esp.replies = [failure]
    caplog.set_level("INFO")

    # When the worker sends a reset email
    issued = send_reset_email(user)

    # Then it gives up at once, saying why by error type only
    assert len(esp.requests) == 1
    assert delays == []
    assert f"giving up after 1 attempt(s): {error}" in caplog.text
    assert_no_secrets(caplog.text, user=user, issued=issued)
