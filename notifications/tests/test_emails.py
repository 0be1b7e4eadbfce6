"""What the emails say: plain text as typed, HTML escaped, subjects on one line."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail

from accounts import reset_tokens
from notifications import emails, services

pytestmark = pytest.mark.django_db

# What anyone could register under someone else's address, to have this service mail it
NAME = "customer,\n\nURGENT: your wallet is frozen. Verify at https://evil.example/verify"


def html_of(message) -> str:
    (html, mimetype) = message.alternatives[0]
    assert mimetype == "text/html"
    return html


def test_reset_email_carries_no_text_the_registrant_typed(make_user):
    user = make_user(full_name=NAME)
    issued = reset_tokens.token_issue(user=user)

    services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)

    (message,) = mail.outbox
    assert message.subject == "Reset your password"
    assert message.body.startswith("Hello,\n")
    for part in (message.body, html_of(message)):
        assert "evil.example" not in part
        assert "URGENT" not in part


def test_password_changed_notice_carries_no_text_the_registrant_typed(make_user):
    user = make_user(full_name=NAME)
    notice = services.password_changed_notice_record(user=user)

    services.password_changed_notice_deliver(notice_id=notice.pk)

    (message,) = mail.outbox
    assert message.subject == "Your password was changed"
    assert message.body.startswith("Hello,\n")
    for part in (message.body, html_of(message)):
        assert "evil.example" not in part


@pytest.mark.parametrize(
    ("kind", "advice"),
    [
        ("password_changed", "reset your password now and contact support.\n"),
        ("email_changed", "If you did not ask for this, contact support.\n"),
    ],
)
def test_account_notice_without_a_support_contact_says_only_contact_support(settings, kind, advice):
    settings.SUPPORT_CONTACT = ""

    emails.account_notice_send(kind=kind, to="ada@example.com")

    (message,) = mail.outbox
    assert message.body.endswith(advice)
    assert "contact support.</p>" in html_of(message)
    assert "href" not in html_of(message)


@pytest.mark.parametrize("kind", ["password_changed", "email_changed"])
@pytest.mark.parametrize(
    ("contact", "href"),
    [
        ("help@pay.example", 'href="mailto:help@pay.example"'),
        (
            "https://pay.example/help?topic=account&lang=en",
            'href="https://pay.example/help?topic=account&amp;lang=en"',
        ),
    ],
)
def test_account_notice_tells_where_to_reach_support(settings, contact, href, kind):
    # Someone whose account was changed by another needs a way to act on it, not only advice.
    settings.SUPPORT_CONTACT = contact

    emails.account_notice_send(kind=kind, to="ada@example.com")

    (message,) = mail.outbox
    assert message.body.endswith(f"contact support:\n\n{contact}\n")
    assert href in html_of(message)


@pytest.mark.parametrize("kind", ["password_reset", "password_changed", "email_changed"])
def test_every_email_asks_auto_responders_not_to_answer_it(user, kind):
    # An out-of-office or ticket auto-reply quoting the reset email would carry its live link
    # to whoever reads the sender's address.
    if kind == "password_reset":
        emails.password_reset_email_send(to=user.email, link="https://x.example/r", time_left=600)
    else:
        emails.account_notice_send(kind=kind, to=user.email)

    (message,) = mail.outbox
    headers = message.message()
    assert headers["Auto-Submitted"] == "auto-generated"
    assert headers["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    # A transactional email: nothing to unsubscribe from
    assert headers["List-Unsubscribe"] is None


def test_link_with_an_ampersand_works_in_both_parts():
    link = "https://app.example.com/reset?lang=en&token=abc"

    emails.password_reset_email_send(to="ada@example.com", link=link, time_left=600)

    (message,) = mail.outbox
    assert f"\n{link}\n" in message.body
    assert 'href="https://app.example.com/reset?lang=en&amp;token=abc"' in html_of(message)


def test_subject_is_one_line_of_unescaped_text(settings, tmp_path):
    # No subject template names the user today; one that does must still send.
    (tmp_path / "notifications").mkdir()
    (tmp_path / "notifications" / "probe.subject").write_text("Hello {{ full_name }}\n")
    (tmp_path / "notifications" / "probe.txt").write_text("Hello {{ full_name }},\n")
    (tmp_path / "notifications" / "probe.html").write_text("<p>Hello {{ full_name }},</p>\n")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]

    emails.email_send(
        to="ada@example.com", template="probe", context={"full_name": "Ada O'Brien\r\n& Co"}
    )

    (message,) = mail.outbox
    assert message.subject == "Hello Ada O'Brien & Co"


@pytest.mark.parametrize(
    ("left_ms", "stated"),
    [
        (599_999, "9 minutes"),
        (450_000, "7 minutes"),
        (119_999, "1 minute"),
        (45_000, "less than a minute"),
    ],
)
def test_reset_email_states_the_time_the_link_has_left_when_it_goes_out(
    user, redis_client, left_ms, stated
):
    # Given a link whose email goes out late (retries, a backlog, a stopped worker): its token
    # has only this much of its life left
    before = datetime.now(UTC)
    issued = reset_tokens.token_issue(user=user)
    redis_client.pexpire(reset_tokens._token_key(reset_tokens.digest(issued.token)), left_ms)

    # When the worker sends it
    services.password_reset_deliver(user_id=user.pk, nonce=issued.nonce)
    after = datetime.now(UTC)

    # Then both parts say what is left, rounded down, never the full PASSWORD_RESET_TIMEOUT
    (message,) = mail.outbox
    expiry = {f"{moment + timedelta(milliseconds=left_ms):%H:%M} UTC" for moment in (before, after)}
    for part in (message.body, html_of(message)):
        found = re.search(r"The link works once and expires at (\d\d:\d\d UTC), (.+?) after", part)
        assert found, part
        assert found.group(1) in expiry
        assert found.group(2) == stated
