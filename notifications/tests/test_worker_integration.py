"""End to end through the real worker process, the real Redis broker and a real SMTP server."""

import re

import pytest

from testing.smtp import text_part

NEW_PASSWORD = "a-brand-new-passphrase"


@pytest.mark.timeout(90)
def test_reset_round_trip_through_the_worker_and_smtp(api, worker_process, smtp_sink):
    api.post(
        "/api/v1/auth/register/",
        {"full_name": "Ada Lovelace", "email": "ada@example.com", "password": "first-passphrase-1"},
        format="json",
    )
    old = api.post(
        "/api/v1/auth/login/",
        {"email": "ada@example.com", "password": "first-passphrase-1"},
        format="json",
    ).json()

    forgot = api.post("/api/v1/auth/password/forgot/", {"email": "ada@example.com"}, format="json")
    assert forgot.status_code == 202

    (message,) = smtp_sink.wait_for(1)
    assert message["To"] == "ada@example.com"
    assert message.get_content_type() == "multipart/alternative"
    body = text_part(message)
    assert "valid for 10 minutes" in body
    token = re.search(r"/reset-password/\?token=([0-9a-f]{64})", body).group(1)

    reset = api.post(
        "/api/v1/auth/password/reset/", {"token": token, "password": NEW_PASSWORD}, format="json"
    )
    assert reset.status_code == 200

    login = api.post(
        "/api/v1/auth/login/", {"email": "ada@example.com", "password": NEW_PASSWORD}, format="json"
    )
    assert login.status_code == 200
    stale = api.post("/api/v1/auth/token/refresh/", {"refresh": old["refresh"]}, format="json")
    assert stale.status_code == 401

    notice = smtp_sink.wait_for(2)[1]
    assert notice["Subject"] == "Your password was changed"
    assert token not in worker_process.log()


@pytest.mark.timeout(90)
def test_forgot_for_an_unknown_email_sends_nothing(api, worker_process, smtp_sink, user):
    api.post("/api/v1/auth/password/forgot/", {"email": "nobody@example.com"}, format="json")
    api.post("/api/v1/auth/password/forgot/", {"email": user.email}, format="json")

    # Messages are handled in order: once the known one arrived, the unknown one was dropped.
    (message,) = smtp_sink.wait_for(1)
    assert message["To"] == user.email
    worker_process.wait_for_log("no active account for user 0")
    assert len(smtp_sink.messages) == 1
