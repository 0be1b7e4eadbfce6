"""Forgot and reset through the API, as a client and a mailbox see them."""

import io
import re
import threading
from unittest import mock

import psycopg2
import pytest
from django.contrib.auth.hashers import make_password
from django.core import mail
from django.core.management import call_command
from django.db import OperationalError, connection, connections
from redis import exceptions as redis_errors

from accounts import reset_tokens, services
from accounts.models import User
from accounts.tests.test_reset_tokens import all_redis_bytes
from auth_service.exceptions import ResetTokenInvalid
from conftest import PASSWORD
from notifications.models import PasswordChangedNotice

FORGOT = "/api/v1/auth/password/forgot/"
RESET = "/api/v1/auth/password/reset/"
LOGIN = "/api/v1/auth/login/"
REFRESH = "/api/v1/auth/token/refresh/"
ME = "/api/v1/auth/me/"
NEW_PASSWORD = "a-brand-new-passphrase"
TOKEN_INVALID = {
    "detail": "The reset link is invalid, expired or already used. Ask for a new one.",
    "code": "reset_token_invalid",
}

pytestmark = pytest.mark.django_db


def forgot(api, email="ada@example.com"):
    return api.post(FORGOT, {"email": email}, format="json")


def token_from(message) -> str:
    return re.search(r"token=([0-9a-f]{64})", message.body).group(1)


def test_forgot_answers_the_same_bytes_for_known_and_unknown_emails(api, user):
    known = forgot(api, "ada@example.com")
    unknown = forgot(api, "nobody@example.com")

    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert known.json() == {
        "detail": "If an account exists for this email, a reset link is on its way."
    }


@pytest.mark.usefixtures("eager_tasks")
def test_forgot_emails_a_link_with_its_expiry_and_an_ignore_line(api, user):
    forgot(api, "ADA@example.com")

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com"]
    assert message.subject == "Reset your password"
    token = token_from(message)
    assert f"http://testserver/reset-password/?token={token}" in message.body
    html = message.alternatives[0][0]
    assert message.alternatives[0][1] == "text/html"
    for part in (message.body, html):
        assert "Hello," in part
        assert "9 minutes after this email was sent" in part
        assert "If you did not ask for this, ignore this email" in part
        assert token in part


@pytest.mark.usefixtures("eager_tasks")
@pytest.mark.parametrize("email", ["nobody@example.com", "off@example.com"])
def test_forgot_sends_nothing_for_unknown_or_inactive_accounts(api, make_user, email):
    make_user(email="off@example.com", is_active=False)

    response = forgot(api, email)

    assert response.status_code == 202
    assert mail.outbox == []


@pytest.mark.usefixtures("eager_tasks")
def test_link_is_built_from_configuration_not_the_host_header(api, user, settings):
    settings.PASSWORD_RESET_URL = "https://app.example.com/reset"
    settings.ALLOWED_HOSTS = ["testserver", "evil.example.net"]

    api.post(FORGOT, {"email": user.email}, format="json", HTTP_HOST="evil.example.net")

    assert "https://app.example.com/reset?token=" in mail.outbox[0].body
    assert "evil.example.net" not in mail.outbox[0].body


@pytest.mark.usefixtures("eager_tasks")
def test_an_account_whose_password_staff_disabled_gets_no_link_and_the_same_answer(api, make_user):
    locked = make_user(email="locked@example.com")
    locked.set_unusable_password()
    locked.save()

    response = forgot(api, "locked@example.com")
    unknown = forgot(api, "nobody@example.com")

    assert response.status_code == 202
    assert response.content == unknown.content
    assert mail.outbox == []
    assert reset_tokens._redis().get(reset_tokens._user_key(locked.pk)) is None
    locked.refresh_from_db()
    assert not locked.has_usable_password()


def test_forgot_queues_the_email_without_the_raw_token_anywhere_in_redis(api, user, redis_client):
    forgot(api)

    assert redis_client.llen("celery") == 1
    stored = all_redis_bytes(redis_client)
    user_key = f"{reset_tokens.PREFIX}user:{user.pk}".encode()
    token_digest = redis_client.get(user_key)
    assert token_digest is not None
    # The message carries a nonce; the token derived from it is nowhere in Redis.
    for key in redis_client.scan_iter(f"{reset_tokens.PREFIX}token:*"):
        assert key.endswith(token_digest)
    assert b"send_password_reset_email" in stored


@pytest.mark.parametrize("body", [{}, {"email": "not-an-email"}, {"email": ["a@b.c"]}])
def test_forgot_rejects_malformed_email(api, body):
    response = api.post(FORGOT, body, format="json")

    assert response.status_code == 400
    assert "email" in response.json()


@pytest.mark.usefixtures("eager_tasks")
@pytest.mark.parametrize("email", ["ada@example.com\u200b", "ada@exa\ufeffmple.com"])
def test_forgot_refuses_an_email_with_an_invisible_character_like_any_malformed_one(
    api, user, email
):
    lookalike = forgot(api, email)
    unknown = forgot(api, email.replace("ada", "who"))

    assert lookalike.status_code == unknown.status_code == 400
    assert lookalike.content == unknown.content == forgot(api, "not-an-email").content
    assert mail.outbox == []


@pytest.mark.usefixtures("eager_tasks")
def test_reset_sets_the_password_and_ends_every_session(api, user, pair, auth_api):
    forgot(api)
    token = token_from(mail.outbox[0])

    response = api.post(RESET, {"token": token, "password": NEW_PASSWORD}, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "detail": "Your password has been reset. Log in with the new password."
    }
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 401
    assert auth_api.get(ME).status_code == 401
    old = api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")
    assert old.status_code == 401
    new = api.post(LOGIN, {"email": user.email, "password": NEW_PASSWORD}, format="json")
    assert new.status_code == 200
    assert mail.outbox[-1].subject == "Your password was changed"


@pytest.mark.usefixtures("eager_tasks")
def test_token_works_once(api, user):
    forgot(api)
    token = token_from(mail.outbox[0])

    first = api.post(RESET, {"token": token, "password": NEW_PASSWORD}, format="json")
    second = api.post(RESET, {"token": token, "password": "yet-another-passphrase"}, format="json")

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json() == TOKEN_INVALID


@pytest.mark.parametrize("padded", [" {}", "{}\n"])
def test_a_token_with_space_around_it_is_judged_as_sent(api, user, padded):
    # Given a live link, when its token arrives with a space or a line break around it
    link = reset_tokens.token_issue(user=user)

    response = api.post(
        RESET, {"token": padded.format(link.token), "password": NEW_PASSWORD}, format="json"
    )

    # Then it is not that token: refused like any invalid one, and the password stays
    assert response.status_code == 400
    assert response.json() == TOKEN_INVALID
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.usefixtures("eager_tasks")
def test_weak_password_is_rejected_and_keeps_the_token(api, user):
    forgot(api)
    token = token_from(mail.outbox[0])

    weak = api.post(RESET, {"token": token, "password": "password123"}, format="json")
    retry = api.post(RESET, {"token": token, "password": NEW_PASSWORD}, format="json")

    assert weak.status_code == 400
    assert "password" in weak.json()
    assert retry.status_code == 200


@pytest.fixture
def account_updates_fail():
    """PostgreSQL refuses every update of an account row, as on a full disk, until healed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_update BEFORE UPDATE ON accounts_user "
            "FOR EACH ROW EXECUTE FUNCTION refuse_update()"
        )

    def heal():
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS refuse_update ON accounts_user")

    yield heal
    heal()


@pytest.fixture
def commits_fail():
    """PostgreSQL accepts an account update but fails the commit, as when the server dies or
    the disk fills at that moment (a deferred trigger, run by COMMIT)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'could not write to file' USING ERRCODE = '53100'; END $$"
        )
        cursor.execute(
            "CREATE CONSTRAINT TRIGGER refuse_commit AFTER UPDATE ON accounts_user "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()"
        )

    def heal():
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS refuse_commit ON accounts_user")
            cursor.execute("DROP FUNCTION IF EXISTS refuse_commit()")

    yield heal
    heal()


# The UPDATE that stores the new hash fails, or the COMMIT after it (a real commit, so outside
# the test's own transaction).
@pytest.mark.parametrize(
    "failure",
    [
        "account_updates_fail",
        pytest.param("commits_fail", marks=pytest.mark.django_db(transaction=True)),
    ],
)
@pytest.mark.usefixtures("eager_tasks")
def test_a_database_failure_during_reset_keeps_the_link_working(api, make_user, request, failure):
    make_user(email="ada@example.com")
    heal = request.getfixturevalue(failure)
    forgot(api)
    token = token_from(mail.outbox[0])

    failed = api.post(RESET, {"token": token, "password": NEW_PASSWORD}, format="json")
    heal()  # the database recovers
    retry = api.post(RESET, {"token": token, "password": NEW_PASSWORD}, format="json")

    assert failed.status_code == 503
    assert failed.json()["code"] == "service_unavailable"
    assert retry.status_code == 200
    login = api.post(LOGIN, {"email": "ada@example.com", "password": NEW_PASSWORD}, format="json")
    assert login.status_code == 200


@pytest.fixture
def commit_reply_lost():
    """PostgreSQL applies the next COMMIT, then the connection drops before its answer."""
    wrapper = connections["default"]
    real_commit = wrapper.commit
    lost = []

    def commit():
        real_commit()
        if not lost:
            lost.append(True)
            raise OperationalError("server closed the connection unexpectedly")

    with mock.patch.object(wrapper, "commit", commit):
        yield lost


@pytest.mark.django_db(transaction=True)
def test_a_reset_whose_commit_answer_is_lost_succeeds_as_it_did(
    api, client, user, commit_reply_lost, caplog
):
    link = reset_tokens.token_issue(user=user)

    used = api.post(RESET, {"token": link.token, "password": NEW_PASSWORD}, format="json")

    assert commit_reply_lost  # the answer was lost...
    assert used.status_code == 200  # ...and the client hears what happened: the password is set
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert "stored although its commit failed to answer" in caplog.text
    # The link is used, and the "password changed" email is owed (the worker's sweep sends it)
    again = api.post(RESET, {"token": link.token, "password": "another-passphrase"}, format="json")
    assert again.json() == TOKEN_INVALID
    assert PasswordChangedNotice.objects.filter(user=user).count() == 1
    # Opening the link again says it no longer works, before anyone types a password
    page = client.get("/reset-password/", {"token": link.token}).content.decode()
    assert "Ask for a new one in the app" in page


@pytest.mark.django_db(transaction=True)
def test_a_password_change_whose_commit_answer_is_lost_succeeds_as_it_did(
    auth_api, user, commit_reply_lost
):
    changed = auth_api.post(
        "/api/v1/auth/password/change/",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
    )

    assert commit_reply_lost
    assert changed.status_code == 204
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


@pytest.mark.usefixtures("eager_tasks")
def test_a_second_request_kills_the_first_token(api, user):
    forgot(api)
    forgot(api)
    first, second = (token_from(message) for message in mail.outbox)

    stale = api.post(RESET, {"token": first, "password": NEW_PASSWORD}, format="json")
    fresh = api.post(RESET, {"token": second, "password": NEW_PASSWORD}, format="json")

    assert stale.status_code == 400
    assert stale.json() == TOKEN_INVALID
    assert fresh.status_code == 200


@pytest.mark.usefixtures("eager_tasks")
def test_expired_token_is_rejected(api, user, settings):
    settings.PASSWORD_RESET_TIMEOUT = 1
    forgot(api)
    token = token_from(mail.outbox[0])
    reset_tokens._redis().delete(f"{reset_tokens.PREFIX}token:{reset_tokens.digest(token)}")

    response = api.post(RESET, {"token": token, "password": NEW_PASSWORD}, format="json")

    assert response.status_code == 400
    assert response.json() == TOKEN_INVALID


@pytest.mark.parametrize(
    "body",
    [
        {"token": "0" * 64, "password": NEW_PASSWORD},
        {"token": "garbage", "password": NEW_PASSWORD},
        {"token": "💥" * 100, "password": NEW_PASSWORD},
        {"token": "", "password": NEW_PASSWORD},
        {"token": "0" * 32 + "\u0000" + "0" * 31, "password": NEW_PASSWORD},
        {"token": "x" * 5000, "password": NEW_PASSWORD},
    ],
)
def test_unknown_or_garbage_tokens_are_400_reset_token_invalid(api, body):
    response = api.post(RESET, body, format="json")

    assert response.status_code == 400
    assert response.json() == TOKEN_INVALID


@pytest.mark.parametrize(
    "body",
    [{}, {"token": "abc"}, {"password": NEW_PASSWORD}, {"token": 5, "password": ["x"]}],
)
def test_reset_rejects_malformed_bodies_with_field_errors(api, body):
    response = api.post(RESET, body, format="json")

    assert response.status_code == 400
    assert set(response.json()) <= {"token", "password"}


def test_forgot_for_an_unknown_email_does_the_same_redis_work(api, redis_client):
    """A decoy token for no account: equal cost, and it belongs to nobody."""
    forgot(api, "nobody@example.com")
    decoy_digest = redis_client.get(f"{reset_tokens.PREFIX}user:0")

    assert decoy_digest is not None
    assert redis_client.get(f"{reset_tokens.PREFIX}token:".encode() + decoy_digest) == b"0"
    bound = redis_client.get(f"{reset_tokens.PREFIX}bind:".encode() + decoy_digest)
    assert bound == reset_tokens.binding(None).encode()


@pytest.mark.usefixtures("eager_tasks")
def test_password_change_sends_a_notice(auth_api):
    auth_api.post(
        "/api/v1/auth/password/change/",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
    )

    assert [message.subject for message in mail.outbox] == ["Your password was changed"]
    assert mail.outbox[0].to == ["ada@example.com"]


@pytest.mark.usefixtures("eager_tasks")
def test_a_password_change_ends_a_pending_reset_link(api, user, auth_api):
    forgot(api)
    token = token_from(mail.outbox[0])
    changed = auth_api.post(
        "/api/v1/auth/password/change/",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
    )

    reset = api.post(RESET, {"token": token, "password": "yet-another-passphrase"}, format="json")

    assert changed.status_code == 204
    assert reset.status_code == 400
    assert reset.json() == TOKEN_INVALID
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_a_reset_ends_every_other_link_of_the_user(user):
    used = reset_tokens.token_issue(user=user)

    # While another forgot of the user is still queuing its email, the older link is used
    with reset_tokens.token_replacing(
        user_id=user.pk, binding=reset_tokens.binding(user)
    ) as pending:
        services.password_reset_confirm(token=used.token, password=NEW_PASSWORD)

    # The newer link, about to arrive, cannot undo the reset
    assert reset_tokens.token_peek(token=pending.token) is None
    assert not reset_tokens.token_is_current(user_id=user.pk, token=pending.token)
    with pytest.raises(ResetTokenInvalid):
        services.password_reset_confirm(token=pending.token, password="yet-another-passphrase")


def test_a_used_link_stays_used_when_redis_cannot_forget_it(api, user, monkeypatch):
    link = reset_tokens.token_issue(user=user)
    # The reset commits; then Redis fails before it forgets the user's links
    monkeypatch.setattr(
        reset_tokens, "token_revoke", mock.Mock(side_effect=redis_errors.ConnectionError("down"))
    )

    first = api.post(RESET, {"token": link.token, "password": NEW_PASSWORD}, format="json")
    again = api.post(
        RESET, {"token": link.token, "password": "the-link-holders-pass"}, format="json"
    )

    assert first.status_code == 200
    assert reset_tokens.token_peek(token=link.token) is not None  # still in Redis...
    assert again.status_code == 400  # ...but used
    assert again.json() == TOKEN_INVALID
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def while_checking_strength(monkeypatch, action) -> None:
    """Run `action` once, right after the service checks a new password's strength: between a
    reset's look at its link and its write."""
    real_check = services.password_check_strength
    done = []

    def check_then_act(**kwargs):
        real_check(**kwargs)
        if not done:  # a password change in `action` checks its own new password too
            done.append(True)
            action()

    monkeypatch.setattr(services, "password_check_strength", check_then_act)


def change_by_the_owner(user):
    services.password_change(user=user, current_password=PASSWORD, new_password=NEW_PASSWORD)


def change_by_an_operator(user):
    # `manage.py changepassword`: a plain save of a new password, outside the services
    with mock.patch("getpass.getpass", return_value=NEW_PASSWORD):
        call_command("changepassword", user.email, stdout=io.StringIO())


def email_changed_by_staff(user):
    # The admin's user form: the old mailbox may be the one someone else now controls
    user.email = "ada.new@example.com"
    user.save()


def deactivated_by_staff(user):
    user.is_active = False
    user.save()


@pytest.mark.usefixtures("eager_tasks")
@pytest.mark.parametrize(
    ("change", "password_that_holds"),
    [
        (change_by_the_owner, NEW_PASSWORD),
        (change_by_an_operator, NEW_PASSWORD),
        (email_changed_by_staff, PASSWORD),
        (deactivated_by_staff, PASSWORD),
    ],
)
def test_a_reset_link_checked_just_before_the_account_changes_cannot_use_it(
    user, monkeypatch, change, password_that_holds
):
    # Given a reset under way: its link checked and still live, its new password being checked
    link = reset_tokens.token_issue(user=user)
    while_checking_strength(monkeypatch, lambda: change(User.objects.get(pk=user.pk)))

    # When the password is changed, or staff change the account's email or deactivate it, in
    # between, the reset is refused
    with pytest.raises(ResetTokenInvalid):
        services.password_reset_confirm(token=link.token, password="the-link-holders-pass")

    # And the reset did not undo the change: the password that holds is the one it left
    user.refresh_from_db()
    assert user.check_password(password_that_holds)


@pytest.mark.django_db(transaction=True)
def test_a_reset_waiting_on_a_change_that_holds_the_row_lock_is_refused(user):
    link = reset_tokens.token_issue(user=user)
    # Another session has stored a new password and holds the row until it commits
    other = psycopg2.connect(**connection.get_connection_params())
    with other.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_user SET password = %s WHERE id = %s",
            [make_password(NEW_PASSWORD), user.pk],
        )
    results = []

    def reset():
        try:
            services.password_reset_confirm(token=link.token, password="the-link-holders-pass")
            results.append("reset")
        except ResetTokenInvalid:
            results.append("refused")
        finally:
            connection.close()

    thread = threading.Thread(target=reset)
    thread.start()
    thread.join(1)
    assert results == []  # the reset's UPDATE waits for the row

    other.commit()
    other.close()
    thread.join(10)

    # It then finds the hash its link was bound to gone: refused, and the change holds
    assert results == ["refused"]
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_a_link_of_the_previous_release_is_used_up_like_any_other(api, user, monkeypatch):
    # Issued before links had bindings (a deploy's first minutes)...
    link = reset_tokens.token_issue(user=user)
    reset_tokens._redis().delete(reset_tokens._bind_key(reset_tokens.digest(link.token)))
    # ...and used while Redis cannot forget it afterwards
    down = mock.Mock(side_effect=redis_errors.ConnectionError("down"))
    monkeypatch.setattr(reset_tokens, "token_revoke", down)

    first = api.post(RESET, {"token": link.token, "password": NEW_PASSWORD}, format="json")
    again = api.post(RESET, {"token": link.token, "password": "another-passphrase"}, format="json")

    assert first.status_code == 200
    assert again.status_code == 400
    assert again.json() == TOKEN_INVALID
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_a_link_of_the_previous_release_read_by_two_requests_at_once_works_once(user, monkeypatch):
    # Given a link issued before links had bindings, while Redis cannot forget used links
    link = reset_tokens.token_issue(user=user)
    reset_tokens._redis().delete(reset_tokens._bind_key(reset_tokens.digest(link.token)))
    down = mock.Mock(side_effect=redis_errors.ConnectionError("down"))
    monkeypatch.setattr(reset_tokens, "token_revoke", down)
    real_peek = reset_tokens.token_peek
    others = []

    def peek_then_another_request_uses_it(**kwargs):
        peeked = real_peek(**kwargs)
        if not others:
            others.append("reset")
            services.password_reset_confirm(token=link.token, password=NEW_PASSWORD)
        return peeked

    monkeypatch.setattr(reset_tokens, "token_peek", peek_then_another_request_uses_it)

    # When a request read the link just before another used it, it is refused
    with pytest.raises(ResetTokenInvalid):
        services.password_reset_confirm(token=link.token, password="the-link-holders-pass")

    # And the password the first request set holds
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
