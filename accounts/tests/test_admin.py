"""Operators manage users in the Django admin by email."""

import io
import re
import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from accounts import reset_tokens, services
from accounts.admin import OwnPasswordForm, UserEditForm
from accounts.models import User
from accounts.validators import NAME_CONTROL, NAME_INVISIBLE
from conftest import PASSWORD
from notifications.models import EmailChangedNotice, PasswordChangedNotice

REGISTER = "/api/v1/auth/register/"
RESET = "/api/v1/auth/password/reset/"
REFRESH = "/api/v1/auth/token/refresh/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, make_user):
    admin = make_user(email="root@example.com", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def admin_add(admin_client, email: str, full_name: str):
    """Post the admin's add-user form."""
    body = {"email": email, "full_name": full_name}
    body |= {"password1": "a-strong-passphrase", "password2": "a-strong-passphrase"}
    return admin_client.post("/admin/accounts/user/add/", body)


def admin_edit(admin_client, user, *, email: str, full_name: str, is_active: bool = True):
    """Post the admin's change form for the user (an unticked box is left out of a form post)."""
    body = {"email": email, "full_name": full_name}
    body |= {"date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    if is_active:
        body["is_active"] = "on"
    return admin_client.post(f"/admin/accounts/user/{user.pk}/change/", body)


def test_admin_lists_and_searches_users_by_email(admin_client, make_user):
    make_user(email="grace@example.com", full_name="Grace Hopper")

    response = admin_client.get("/admin/accounts/user/", {"q": "grace@"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "grace@example.com" in html
    assert "Grace Hopper" in html


def test_admin_finds_an_address_typed_with_a_capital_sigma(admin_client, make_user):
    make_user(email="ADA@ΠΕΙΡΑΙΩΣ-BANK.GR")  # stored with "σ", as IDNA maps a capital sigma

    response = admin_client.get("/admin/accounts/user/", {"q": "ADA@ΠΕΙΡΑΙΩΣ-BANK.GR"})

    assert "ada@xn---bank-c9d1a6ab0en0a1f.gr" in response.content.decode()


@pytest.mark.parametrize("term", ["ada@bücher.example", "BÜCHER.example", "bücher"])
def test_admin_finds_an_international_domain_as_the_user_writes_it(admin_client, make_user, term):
    make_user(email="ada@bücher.example")  # stored as ada@xn--bcher-kva.example

    response = admin_client.get("/admin/accounts/user/", {"q": term})

    assert "ada@xn--bcher-kva.example" in response.content.decode()


def test_admin_edits_a_user(admin_client, user):
    response = admin_client.get(f"/admin/accounts/user/{user.pk}/change/")

    assert response.status_code == 200
    assert 'name="email"' in response.content.decode()
    assert 'name="full_name"' in response.content.decode()


def test_admin_creates_a_user_with_email_and_full_name(admin_client):
    response = admin_add(admin_client, "New@Example.com", "New Person")

    assert response.status_code == 302
    created = User.objects.get(email="new@example.com")
    assert created.full_name == "New Person"
    assert created.check_password("a-strong-passphrase")


def test_createsuperuser_asks_for_email_and_full_name(monkeypatch):
    createsuperuser_noinput(monkeypatch, email="boss@example.com", full_name="The Boss")

    boss = User.objects.get(email="boss@example.com")
    assert boss.is_superuser
    assert boss.is_staff
    assert boss.full_name == "The Boss"
    assert User.REQUIRED_FIELDS == ["full_name"]
    assert User.USERNAME_FIELD == "email"


@pytest.mark.parametrize("how", ["add", "edit"])
def test_admin_says_a_taken_email_once_on_its_field_in_any_letter_case(
    admin_client, make_user, how
):
    make_user(email="ada@example.com")
    other = make_user(email="bob@example.com")

    if how == "add":
        response = admin_add(admin_client, "ADA@Example.com", "New Person")
    else:
        response = admin_edit(admin_client, other, email="ADA@Example.com", full_name="Bob")

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors == {
        "email": ["User with this Email address already exists."]
    }
    assert "Constraint" not in response.content.decode()


@pytest.mark.parametrize("how", ["add", "edit"])
def test_admin_says_an_email_stored_in_another_case_is_taken(admin_client, make_user, how):
    ada = make_user(email="ada@example.com")
    # A row written around the model (SQL, loaddata, a queryset update) keeps its letter case.
    User.objects.filter(pk=ada.pk).update(email="Ada@Example.com")
    other = make_user(email="bob@example.com")

    if how == "add":
        response = admin_add(admin_client, "ada@example.com", "New Person")
    else:
        response = admin_edit(admin_client, other, email="ada@example.com", full_name="Bob")

    assert response.status_code == 200  # the form again, with the error: not a 500
    assert response.context["adminform"].form.errors == {
        "email": ["User with this Email address already exists."]
    }


def test_admin_keeps_a_users_own_email_in_another_case(admin_client, make_user):
    ada = make_user(email="ada@example.com")
    User.objects.filter(pk=ada.pk).update(email="Ada@Example.com")

    response = admin_edit(admin_client, ada, email="Ada@Example.com", full_name="Ada L.")

    assert response.status_code == 302  # its own address is not "taken"
    ada.refresh_from_db()
    assert ada.full_name == "Ada L."


def test_admin_refuses_an_email_that_grows_past_the_column_when_lower_cased(admin_client):
    email = "a@" + ".".join(["İ" * 60] * 4) + ".com"  # 249 typed, 489 lower-cased

    response = admin_add(admin_client, email, "New Person")

    assert response.status_code == 200  # the form again, with the error
    assert "at most 254 characters" in response.content.decode()
    assert not User.objects.filter(full_name="New Person").exists()


def test_admin_deletes_a_user_who_has_spent_refresh_tokens(admin_client, user, pair, api):
    rotated = api.post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert rotated.status_code == 200

    confirm = admin_client.get(f"/admin/accounts/user/{user.pk}/delete/")
    deleted = admin_client.post(f"/admin/accounts/user/{user.pk}/delete/", {"post": "yes"})

    assert confirm.status_code == 200
    assert deleted.status_code == 302
    assert not User.objects.filter(pk=user.pk).exists()


@pytest.mark.parametrize("email", ["ada@example.com\u200b", "\u0131van@example.com"])
def test_admin_refuses_an_email_with_an_invisible_or_look_alike_character(
    admin_client, user, email
):
    response = admin_add(admin_client, email, "Imposter")

    assert response.status_code == 200  # the form again, with the error
    assert "Enter a valid email address." in response.content.decode()
    assert not User.objects.filter(full_name="Imposter").exists()


def test_admin_refuses_a_name_that_shows_in_another_order(admin_client):
    response = admin_add(admin_client, "grace@example.com", "\u202eecalevoL adA")

    assert response.status_code == 200  # the form again, with the error
    assert "A name cannot hold control or text-direction characters." in response.content.decode()
    assert not User.objects.filter(email="grace@example.com").exists()


def test_createsuperuser_refuses_an_email_with_an_invisible_character(monkeypatch, user):
    with pytest.raises(CommandError, match=r"^Enter a valid email address\.$"):
        createsuperuser_noinput(monkeypatch, email="ada@exa\u200bmple.org", full_name="Imposter")

    assert not User.objects.filter(full_name="Imposter").exists()


class Terminal(io.StringIO):
    """Standard input as a terminal: createsuperuser prompts only on one."""

    def isatty(self) -> bool:
        return True


def createsuperuser_typed(monkeypatch, *answers: str, password: str, **options) -> str:
    """Run createsuperuser at its prompts with these answers; what it wrote to stderr."""
    typed = iter(answers)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    monkeypatch.setattr("getpass.getpass", lambda prompt="": password)
    stderr = io.StringIO()
    call_command(
        "createsuperuser", stdin=Terminal(), stdout=io.StringIO(), stderr=stderr, **options
    )
    return stderr.getvalue()


def createsuperuser_noinput(
    monkeypatch,
    password: str | None = "a-strong-passphrase",  # noqa: S107 - a test's
    **options,
):
    """Run createsuperuser --noinput with DJANGO_SUPERUSER_PASSWORD set to `password` (None:
    unset)."""
    if password is None:
        monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", password)
    call_command("createsuperuser", interactive=False, verbosity=0, **options)


NAMES_REGISTER_REFUSES = [
    ("\u202eecalevoL adA", NAME_CONTROL),  # shows reversed in the admin
    ("Ada\nLovelace", NAME_CONTROL),
    ("\u200b", NAME_INVISIBLE),
    ("\u3164", NAME_INVISIBLE),  # Hangul filler
]


@pytest.mark.parametrize("given", ["option", "environment"])
@pytest.mark.parametrize(("name", "message"), NAMES_REGISTER_REFUSES)
def test_createsuperuser_refuses_a_name_register_refuses(api, monkeypatch, given, name, message):
    body = {"full_name": name, "email": "ada@example.com", "password": PASSWORD}
    assert api.post(REGISTER, body, format="json").json() == {"full_name": [message]}
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-strong-passphrase")
    options = {"full_name": name}
    if given == "environment":
        monkeypatch.setenv("DJANGO_SUPERUSER_FULL_NAME", name)
        options = {}

    with pytest.raises(CommandError, match=rf"^{re.escape(message)}$"):
        call_command(
            "createsuperuser", interactive=False, email="boss@example.com", verbosity=0, **options
        )

    assert not User.objects.exists()


def test_createsuperuser_asks_again_for_a_name_register_refuses(monkeypatch):
    errors = createsuperuser_typed(
        monkeypatch,
        "\u202eecalevoL adA",
        "Grace Hopper",
        password="a-strong-passphrase",
        email="grace@example.com",
    )

    assert f"Error: {NAME_CONTROL}" in errors
    assert User.objects.get().full_name == "Grace Hopper"


@pytest.mark.parametrize(
    "password",
    [
        "",
        "short-1",  # fewer than 10 characters
        "password123",  # common
        "8472910365",  # digits only
        "abcdefghijkl",  # a run
        "boss.example",  # like the email
        "x7" * 65,  # longer than any password field takes
    ],
)
def test_createsuperuser_noinput_refuses_a_password_register_refuses(api, monkeypatch, password):
    body = {"full_name": "The Boss", "email": "boss@example.com", "password": password}
    assert api.post(REGISTER, body, format="json").status_code == 400
    with pytest.raises(CommandError, match=r"^DJANGO_SUPERUSER_PASSWORD is refused: \S"):
        createsuperuser_noinput(
            monkeypatch, password, email="Boss@Example.com", full_name="The Boss"
        )

    assert not User.objects.exists()


def test_createsuperuser_offers_no_way_round_the_password_rules_at_its_prompt(monkeypatch):
    with pytest.raises(CommandError, match="This password is too common"):
        # Django asks "Bypass password validation and create user anyway? [y/N]"
        createsuperuser_typed(
            monkeypatch, "y", password="password123", email="boss@example.com", full_name="Boss"
        )

    assert not User.objects.exists()


def test_createsuperuser_noinput_checks_the_password_against_the_environments_account(
    monkeypatch,
):
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "grace.hopper@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_FULL_NAME", "Grace Hopper")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "gracehopper")

    with pytest.raises(CommandError, match="too similar to the"):
        call_command("createsuperuser", interactive=False, verbosity=0)

    assert not User.objects.exists()


def test_createsuperuser_noinput_without_a_password_makes_one_that_cannot_sign_in(monkeypatch):
    createsuperuser_noinput(monkeypatch, None, email="boss@example.com", full_name="The Boss")

    assert not User.objects.get().has_usable_password()


def test_createsuperuser_stores_the_email_and_name_as_register_does(monkeypatch):
    createsuperuser_noinput(monkeypatch, email="Ada@Bücher.Example", full_name="  Ada Lovelace ")

    boss = User.objects.get()
    assert (boss.email, boss.full_name) == ("ada@xn--bcher-kva.example", "Ada Lovelace")


@pytest.mark.parametrize("email", ["ADA@Bücher.example", "ada@XN--BCHER-KVA.example"])
def test_createsuperuser_refuses_an_email_taken_in_another_spelling(make_user, monkeypatch, email):
    make_user(email="ada@bücher.example")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-strong-passphrase")

    with pytest.raises(CommandError, match=r"^Error: That email address is already taken\.$"):
        call_command(
            "createsuperuser", interactive=False, email=email, full_name="Imposter", verbosity=0
        )

    assert not User.objects.filter(full_name="Imposter").exists()


def reset_works(api, token: str) -> bool:
    body = {"token": token, "password": "the-holders-new-passphrase"}
    return api.post(RESET, body, format="json").status_code == 200


@pytest.mark.usefixtures("eager_tasks")
def test_a_password_set_in_the_admin_ends_sessions_and_reset_links_and_tells_the_user(
    admin_client, api, user, pair
):
    # Staff lock out someone who holds a live reset link of the account
    link = reset_tokens.token_issue(user=user)

    response = admin_client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": "staff-chosen-passphrase", "password2": "staff-chosen-passphrase"},
    )

    assert response.status_code == 302
    assert reset_tokens.token_peek(token=link.token) is None  # forgotten in Redis too
    assert not reset_works(api, link.token)
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 401
    user.refresh_from_db()
    assert user.check_password("staff-chosen-passphrase")
    assert [message.subject for message in mail.outbox] == ["Your password was changed"]


@pytest.mark.usefixtures("eager_tasks")
def test_password_sign_in_disabled_in_the_admin_ends_reset_links(admin_client, api, user):
    link = reset_tokens.token_issue(user=user)

    response = admin_client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"usable_password": "false", "unset-password": "Disable password-based authentication"},
    )

    assert response.status_code == 302
    assert reset_tokens.token_peek(token=link.token) is None  # forgotten in Redis too
    assert not reset_works(api, link.token)
    user.refresh_from_db()
    assert not user.has_usable_password()


def test_changepassword_command_ends_reset_links(
    api, user, monkeypatch, django_capture_on_commit_callbacks
):
    link = reset_tokens.token_issue(user=user)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "an-operators-passphrase")

    with django_capture_on_commit_callbacks(execute=True):
        call_command("changepassword", user.email, stdout=None)

    assert reset_tokens.token_peek(token=link.token) is None  # forgotten in Redis too
    assert not reset_works(api, link.token)
    user.refresh_from_db()
    assert user.check_password("an-operators-passphrase")


def test_changepassword_finds_a_user_by_either_spelling_of_their_domain(make_user, monkeypatch):
    user = make_user(email="ada@bücher.example")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "an-operators-passphrase")

    call_command("changepassword", "Ada@Bücher.example", stdout=None)

    user.refresh_from_db()
    assert user.check_password("an-operators-passphrase")


def test_createsuperuser_refuses_an_email_too_long_once_its_domain_is_encoded(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-strong-passphrase")
    email = "a" * 64 + "@" + ".".join(["a" * 55 + "ü"] * 3) + ".com"  # 239 typed, 260 stored

    with pytest.raises(CommandError, match="at most 254 characters"):
        call_command(
            "createsuperuser", interactive=False, email=email, full_name="Root", verbosity=0
        )

    assert not User.objects.exists()


def test_a_link_does_not_outlive_a_deactivation(
    admin_client, api, user, django_capture_on_commit_callbacks
):
    link = reset_tokens.token_issue(user=user)
    user.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        user.save()

    user.is_active = True
    user.save()

    assert reset_tokens.token_peek(token=link.token) is None  # forgotten in Redis too
    assert not reset_works(api, link.token)
    assert user.check_password(PASSWORD)


def test_a_link_issued_while_a_deactivation_commits_does_not_outlive_it(
    api, user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save()
        # A forgot served before the deactivation committed saw the account still active
        link = reset_tokens.token_issue(user=user)

    user.is_active = True
    user.save()

    assert not reset_works(api, link.token)
    assert user.check_password(PASSWORD)


def test_saving_a_user_otherwise_leaves_their_reset_link_working(
    api, user, django_capture_on_commit_callbacks
):
    link = reset_tokens.token_issue(user=user)
    user.full_name = "Ada King"
    with django_capture_on_commit_callbacks(execute=True):
        user.save()

    assert reset_works(api, link.token)


def test_a_failed_staff_sign_in_does_not_call_the_email_case_sensitive(client, make_user):
    make_user(email="staff@example.com", is_staff=True)

    response = client.post(
        "/admin/login/", {"username": "staff@example.com", "password": "not-the-password"}
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "The password is case-sensitive; the email address is not." in html
    assert "both fields may be case-sensitive" not in html


def test_the_admin_sign_in_answers_a_method_it_does_not_serve_with_the_json_405(client):
    response = client.generic("TRACE", "/admin/login/")

    assert response.status_code == 405
    assert response.json() == {
        "detail": 'Method "TRACE" not allowed.',
        "code": "method_not_allowed",
    }
    assert response["Allow"] == "GET, HEAD, POST, OPTIONS"


def test_the_admin_sign_out_opened_by_get_is_the_json_405(admin_client):
    response = admin_client.get("/admin/logout/")

    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "GET" not allowed.', "code": "method_not_allowed"}
    assert "POST" in response["Allow"]
    assert admin_client.get("/admin/").status_code == 200  # still signed in


def test_an_email_changed_in_the_admin_ends_links_sent_to_the_old_address(admin_client, api, user):
    link = reset_tokens.token_issue(user=user)

    response = admin_edit(
        admin_client, user, email="ada@new-mailbox.example", full_name=user.full_name
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert reset_tokens.token_peek(token=link.token) is None  # forgotten in Redis too
    assert not reset_works(api, link.token)


@pytest.mark.usefixtures("eager_tasks")
def test_an_email_changed_in_the_admin_is_told_to_the_old_address(
    admin_client, api, user, pair, django_capture_on_commit_callbacks
):
    # Someone talked staff into moving the account to their mailbox: the owner hears of it
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_edit(
            admin_client, user, email="ada@new-mailbox.example", full_name=user.full_name
        )

    assert response.status_code == 302, response.content.decode()[:2000]
    (message,) = mail.outbox
    assert message.to == ["ada@example.com"]
    assert message.subject == "The email address of your account was changed"
    assert "ada@new-mailbox.example" not in message.body + message.alternatives[0][0]
    assert not EmailChangedNotice.objects.exists()  # sent, so forgotten
    # The password still holds: the change alone signs no one out
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 200


@pytest.mark.usefixtures("eager_tasks")
def test_an_admin_edit_that_keeps_the_email_sends_nothing(
    admin_client, user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_edit(admin_client, user, email=user.email, full_name="Ada King")

    assert response.status_code == 302, response.content.decode()[:2000]
    assert mail.outbox == []
    assert not EmailChangedNotice.objects.exists()


def test_an_email_change_refused_by_the_form_owes_no_notice(admin_client, make_user):
    make_user(email="taken@example.com")
    other = make_user(email="bob@example.com")

    response = admin_edit(admin_client, other, email="taken@example.com", full_name="Bob")

    assert response.status_code == 200
    assert not EmailChangedNotice.objects.exists()


def test_an_email_stored_in_capitals_saved_as_stored_now_owes_no_notice(
    admin_client, user, queued, django_capture_on_commit_callbacks
):
    # A row written around the model keeps its capitals; the admin stores it lower-cased
    User.objects.filter(pk=user.pk).update(email="Ada@Example.com")
    user.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_edit(admin_client, user, email="ada@example.com", full_name="Ada")

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email == "ada@example.com"
    assert not EmailChangedNotice.objects.exists()  # the same mailbox: nothing to tell
    queued.assert_not_called()


def test_an_email_changed_in_a_shell_is_told_to_the_old_address_too(
    user, django_capture_on_commit_callbacks
):
    queuing = mock.patch("notifications.tasks.send_email_changed_notice.delay")
    with queuing as queued, django_capture_on_commit_callbacks(execute=True):
        user.email = "ada@new-mailbox.example"
        user.save()

    (notice,) = EmailChangedNotice.objects.all()
    assert notice.address == "ada@example.com"
    queued.assert_called_once_with(notice.pk)
    assert not PasswordChangedNotice.objects.exists()


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Ada@New-Mailbox.example", "ada@new-mailbox.example"),
        ("ada@Bücher.example", "ada@xn--bcher-kva.example"),
    ],
)
def test_an_email_set_in_a_shell_is_stored_as_sign_in_finds_it(
    user, api, typed, stored, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        user.email = typed
        user.save()

    assert User.objects.get(pk=user.pk).email == stored
    login = api.post("/api/v1/auth/login/", {"email": typed, "password": PASSWORD}, format="json")
    assert login.status_code == 200
    (notice,) = EmailChangedNotice.objects.all()
    assert notice.address == "ada@example.com"


def test_an_account_created_in_a_shell_without_the_manager_is_stored_as_sign_in_finds_it(api):
    user = User(email="Grace@Bücher.example", full_name="Grace Hopper")
    user.set_password(PASSWORD)
    user.save()

    assert User.objects.get(pk=user.pk).email == "grace@xn--bcher-kva.example"
    login = api.post(
        "/api/v1/auth/login/",
        {"email": "grace@bücher.example", "password": PASSWORD},
        format="json",
    )
    assert login.status_code == 200


def test_a_row_from_before_domains_were_encoded_can_still_be_saved_as_it_is(make_user):
    # Its encoded form is another account's (accounts migration 0005 left it for staff)
    twin = make_user(email="placeholder@example.com")
    User.objects.filter(pk=twin.pk).update(email="e10@例え.jp")
    make_user(email="e10@xn--r8jz45g.jp")
    twin = User.objects.get(pk=twin.pk)

    twin.is_active = False
    twin.save()

    assert User.objects.get(pk=twin.pk).email == "e10@例え.jp"


def test_staff_deactivate_a_row_from_before_domains_were_encoded_in_the_admin(
    admin_client, make_user
):
    # Migration 0005 left it for staff to merge with the account that has its encoded form:
    # the form keeps its email as stored, and must not call it another account's
    twin = make_user(email="placeholder@example.com")
    User.objects.filter(pk=twin.pk).update(email="e10@例え.jp")
    make_user(email="e10@xn--r8jz45g.jp")

    response = admin_edit(
        admin_client, twin, email="e10@例え.jp", full_name="Ada Lovelace", is_active=False
    )

    assert response.status_code == 302
    stored = User.objects.get(pk=twin.pk)
    assert (stored.email, stored.is_active) == ("e10@例え.jp", False)


def test_an_email_change_whose_notice_cannot_be_queued_leaves_it_to_the_sweep(
    user, django_capture_on_commit_callbacks, caplog
):
    # Redis is out as staff save: the save stands, and the notice waits in PostgreSQL
    queuing = mock.patch(
        "notifications.tasks.send_email_changed_notice.delay", side_effect=ConnectionError("down")
    )
    with queuing, django_capture_on_commit_callbacks(execute=True):
        user.email = "ada@new-mailbox.example"
        user.save()

    user.refresh_from_db()
    assert user.email == "ada@new-mailbox.example"
    (notice,) = EmailChangedNotice.objects.all()
    assert notice.address == "ada@example.com"
    assert "email_changed notice for user" in caplog.text
    assert "left to the sweep: ConnectionError" in caplog.text


def notices_queued(queued) -> list[str]:
    return [call.args[0] for call in queued.call_args_list]


def told(queued) -> str:
    """The address the one email-changed notice owed goes to, once its task was queued."""
    (notice,) = EmailChangedNotice.objects.all()
    assert notices_queued(queued) == [notice.pk]
    return notice.address


@pytest.fixture
def queued():
    with mock.patch("notifications.tasks.send_email_changed_notice.delay") as delay:
        yield delay


def test_an_email_change_rolled_back_owes_and_queues_nothing(
    user, queued, django_capture_on_commit_callbacks
):
    def change_that_fails():
        with transaction.atomic():
            user.email = "ada@new-mailbox.example"
            user.save()
            raise RuntimeError("the rest of the change failed")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        change_that_fails()

    assert not EmailChangedNotice.objects.exists()
    assert notices_queued(queued) == []
    assert User.objects.get(pk=user.pk).email == "ada@example.com"


def test_an_email_change_tried_again_after_a_rollback_is_told(
    user, queued, django_capture_on_commit_callbacks
):
    # The first try fails after the save; staff run the same change again on the same object
    def change(fail: bool):
        with transaction.atomic():
            user.email = "ada@new-mailbox.example"
            user.save()
            if fail:
                raise RuntimeError("the rest of the change failed")

    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            change(fail=True)
        change(fail=False)

    assert told(queued) == "ada@example.com"


def test_a_save_that_stores_no_new_email_owes_no_notice(
    user, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        user.full_name = "Ada King"
        user.save()
        user.email = "ada@new-mailbox.example"  # changed in memory, left out of the save
        user.save(update_fields=["full_name"])

    assert User.objects.get(pk=user.pk).email == "ada@example.com"
    assert not EmailChangedNotice.objects.exists()
    assert notices_queued(queued) == []


def test_an_email_change_saved_after_a_save_of_other_fields_is_still_told(
    user, queued, django_capture_on_commit_callbacks
):
    # A change made in memory, then a save that left the email out, then the save that stores it
    with django_capture_on_commit_callbacks(execute=True):
        user.email = "ada@new-mailbox.example"
        user.full_name = "Ada King"
        user.save(update_fields=["full_name"])
        user.save(update_fields=["email"])

    assert told(queued) == "ada@example.com"


def test_a_user_reloaded_after_someone_else_moved_their_email_owes_no_second_notice(
    user, queued, django_capture_on_commit_callbacks
):
    # Another process moved the account; this one reloads it, then saves the name
    User.objects.filter(pk=user.pk).update(email="ada@new-mailbox.example")
    user.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        user.full_name = "Ada King"
        user.save()

    assert not EmailChangedNotice.objects.exists()
    assert notices_queued(queued) == []


def test_a_user_loaded_without_their_email_owes_no_notice_when_saved(
    user, queued, django_capture_on_commit_callbacks
):
    partial = User.objects.only("full_name").get(pk=user.pk)
    with django_capture_on_commit_callbacks(execute=True):
        partial.full_name = "Ada King"
        partial.save()
        assert partial.email == "ada@example.com"  # loaded only now
        partial.save()

    assert not EmailChangedNotice.objects.exists()
    assert notices_queued(queued) == []


def test_an_email_assigned_without_being_loaded_is_told_to_the_old_address(
    user, queued, django_capture_on_commit_callbacks
):
    partial = User.objects.defer("email").get(pk=user.pk)
    with django_capture_on_commit_callbacks(execute=True):
        partial.email = "ada@new-mailbox.example"
        partial.save()

    assert User.objects.get(pk=user.pk).email == "ada@new-mailbox.example"
    assert told(queued) == "ada@example.com"


def test_a_stale_save_that_puts_an_old_email_back_is_told_to_the_address_it_replaced(
    user, queued, django_capture_on_commit_callbacks
):
    # Another process moved the account; this object, loaded before, saves every field
    User.objects.filter(pk=user.pk).update(email="ada@new-mailbox.example")
    with django_capture_on_commit_callbacks(execute=True):
        user.full_name = "Ada King"
        user.save()

    assert User.objects.get(pk=user.pk).email == "ada@example.com"
    assert told(queued) == "ada@new-mailbox.example"


def test_a_shell_transaction_that_keeps_the_email_does_not_hold_up_the_users_refresh(
    transactional_db, user, login, api
):
    # Staff fix the name inside transaction.atomic(), as the README asks, and have not
    # committed yet: the user's refresh (a foreign key to the row) goes through meanwhile
    pair = login()
    saved, done = threading.Event(), threading.Event()

    def shell():
        staff_copy = User.objects.get(pk=user.pk)
        with transaction.atomic():
            staff_copy.full_name = "Ada King"
            staff_copy.save()  # every column, the email unchanged
            saved.set()
            done.wait(10)
        connection.close()

    thread = threading.Thread(target=shell)
    thread.start()
    assert saved.wait(10)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '1s'")
        response = api.post(
            "/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
        )
    finally:
        done.set()
        thread.join()

    assert response.status_code == 200, response.content


def test_an_admin_edit_does_not_write_back_a_password_reset_meanwhile(
    admin_client, api, user, monkeypatch
):
    # A reset commits while staff are saving the user's name (after the admin loaded the row)
    link = reset_tokens.token_issue(user=user)
    real_clean = UserEditForm.clean

    def reset_meanwhile(form):
        services.password_reset_confirm(token=link.token, password="reset-while-editing")
        return real_clean(form)

    monkeypatch.setattr(UserEditForm, "clean", reset_meanwhile)

    response = admin_edit(admin_client, user, email=user.email, full_name="Ada King")

    assert response.status_code == 302, response.content.decode()[:2000]
    user.refresh_from_db()
    # The admin saved the name, and only what it changed: the reset's password holds, and the
    # used link stays used
    assert user.full_name == "Ada King"
    assert user.check_password("reset-while-editing")
    assert reset_tokens.token_peek(token=link.token) is None  # forgotten in Redis too
    assert not reset_works(api, link.token)


def test_staff_can_lock_an_account_whose_earlier_name_the_name_check_refuses(
    admin_client, make_user
):
    # Registered before names were checked
    abuser = make_user(email="evil@example.com", full_name="Ada\u202eecalevoL")

    response = admin_edit(
        admin_client, abuser, email=abuser.email, full_name=abuser.full_name, is_active=False
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    abuser.refresh_from_db()
    assert not abuser.is_active


def test_admin_refuses_a_changed_name_the_name_check_refuses(admin_client, user):
    response = admin_edit(admin_client, user, email=user.email, full_name="\u200b")

    assert response.status_code == 200
    assert "Enter a name with at least one visible character." in response.content.decode()
    user.refresh_from_db()
    assert user.full_name == "Ada Lovelace"


@pytest.mark.usefixtures("eager_tasks")
def test_staff_changing_their_own_password_end_other_sessions_and_are_told(client, api, make_user):
    staff = make_user(email="root@example.com", is_staff=True, is_superuser=True)
    login = {"email": staff.email, "password": PASSWORD}
    pair = api.post("/api/v1/auth/login/", login, format="json").json()
    client.force_login(staff)
    new = "a-new-pass-4-root"

    response = client.post(
        "/admin/password_change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )

    assert response.status_code == 302
    assert response["Location"] == "/admin/password_change/done/"
    staff.refresh_from_db()
    assert staff.check_password(new)
    # This admin session goes on; the API session ends, and the owner is told by email
    assert client.get("/admin/").status_code == 200
    refreshed = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert refreshed.status_code == 401
    assert [m.subject for m in mail.outbox] == ["Your password was changed"]


@pytest.mark.usefixtures("eager_tasks")
def test_staff_changing_their_own_password_do_not_undo_a_change_saved_since_the_old_was_checked(
    client, api, make_user, monkeypatch
):
    staff = make_user(email="root@example.com", is_staff=True, is_superuser=True)
    login = {"email": staff.email, "password": PASSWORD}
    pair = api.post("/api/v1/auth/login/", login, format="json").json()
    client.force_login(staff)
    real_clean = OwnPasswordForm.clean

    def changed_in_another_tab(form):
        # The same password, proved through the API once the admin form has checked it
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
        body = {"current_password": PASSWORD, "new_password": "changed-in-another-tab"}
        changed = api.post("/api/v1/auth/password/change/", body, format="json")
        assert changed.status_code == 204
        return real_clean(form)

    monkeypatch.setattr(OwnPasswordForm, "clean", changed_in_another_tab)
    new = "a-new-pass-4-root"

    response = client.post(
        "/admin/password_change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )

    # The form again: its old password no longer holds, and the change saved first stands
    assert response.status_code == 200
    assert "Your old password was entered incorrectly." in response.content.decode()
    staff.refresh_from_db()
    assert staff.check_password("changed-in-another-tab")
    assert [m.subject for m in mail.outbox] == ["Your password was changed"]


def test_staff_changing_their_own_password_to_the_same_one_are_told(client, make_user):
    staff = make_user(email="root@example.com", is_staff=True, is_superuser=True)
    client.force_login(staff)

    response = client.post(
        "/admin/password_change/",
        {"old_password": PASSWORD, "new_password1": PASSWORD, "new_password2": PASSWORD},
    )

    assert response.status_code == 200  # the form again
    assert "The new password must differ from the current one." in response.content.decode()


@pytest.fixture
def support_client(client, make_user):
    """Staff who may add, view, change and delete users, but are no superuser."""
    support = make_user(email="support@example.com", is_staff=True)
    support.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="accounts",
            codename__in=["add_user", "view_user", "change_user", "delete_user"],
        )
    )
    client.force_login(support)
    client.support = support
    return client


def privileges_posted(user) -> dict:
    """A change form for the user, sent with every box that grants admin access ticked."""
    return {
        "email": user.email,
        "full_name": "Changed Name",
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "groups": [Group.objects.get_or_create(name="Everything")[0].pk],
        "user_permissions": list(Permission.objects.values_list("pk", flat=True)),
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }


def test_staff_who_may_change_users_grant_no_one_admin_access_or_permissions(support_client, user):
    response = support_client.post(
        f"/admin/accounts/user/{user.pk}/change/", privileges_posted(user)
    )

    assert response.status_code == 302  # the rest of the change is saved
    user.refresh_from_db()
    assert user.full_name == "Changed Name"
    assert (user.is_staff, user.is_superuser) == (False, False)
    assert not user.groups.exists()
    assert not user.user_permissions.exists()


def test_staff_who_may_change_users_cannot_change_their_own_account(support_client):
    support = support_client.support

    form = support_client.get(f"/admin/accounts/user/{support.pk}/change/")
    changed = support_client.post(
        f"/admin/accounts/user/{support.pk}/change/", privileges_posted(support)
    )
    password = support_client.post(
        f"/admin/accounts/user/{support.pk}/password/",
        {"password1": "staff-chosen-passphrase", "password2": "staff-chosen-passphrase"},
    )

    assert 'name="is_superuser"' not in form.content.decode()  # shown, not editable
    assert changed.status_code == 403
    assert password.status_code == 403
    support.refresh_from_db()
    assert (support.is_superuser, support.user_permissions.count()) == (False, 4)
    assert support.check_password(PASSWORD)


@pytest.mark.parametrize("target", ["superuser", "staff"])
def test_staff_who_may_change_users_cannot_take_over_a_staff_account(
    support_client, make_user, target
):
    # Whoever sets its password or email signs in with its permissions
    boss = make_user(email="boss@example.com", is_staff=True, is_superuser=target == "superuser")
    boss.user_permissions.set(Permission.objects.all())

    password = support_client.post(
        f"/admin/accounts/user/{boss.pk}/password/",
        {"password1": "staff-chosen-passphrase", "password2": "staff-chosen-passphrase"},
    )
    body = privileges_posted(boss) | {"email": "support+boss@example.com"}
    changed = support_client.post(f"/admin/accounts/user/{boss.pk}/change/", body)
    deleted = support_client.post(f"/admin/accounts/user/{boss.pk}/delete/", {"post": "yes"})
    deleted_in_bulk = support_client.post(
        "/admin/accounts/user/",
        {"action": "delete_selected", "_selected_action": [boss.pk], "post": "yes"},
    )

    assert password.status_code == 403
    assert changed.status_code == 403
    assert deleted.status_code == 403
    assert deleted_in_bulk.status_code == 403
    boss.refresh_from_db()
    assert boss.check_password(PASSWORD)
    assert boss.email == "boss@example.com"


def test_staff_who_may_change_users_still_manage_customers(support_client, make_user):
    customer = make_user(email="customer@example.com")
    leaving = make_user(email="leaving@example.com")

    password = support_client.post(
        f"/admin/accounts/user/{customer.pk}/password/",
        {"password1": "staff-chosen-passphrase", "password2": "staff-chosen-passphrase"},
    )
    locked = admin_edit(
        support_client, customer, email=customer.email, full_name="Customer", is_active=False
    )
    deleted = support_client.post(f"/admin/accounts/user/{leaving.pk}/delete/", {"post": "yes"})

    assert (password.status_code, locked.status_code, deleted.status_code) == (302, 302, 302)
    customer.refresh_from_db()
    assert customer.check_password("staff-chosen-passphrase")
    assert not customer.is_active
    assert not User.objects.filter(pk=leaving.pk).exists()


def test_only_a_superuser_gives_a_group_permissions(client, make_user):
    # A member allowed to change groups would otherwise give their own group anything
    group = Group.objects.create(name="Support")
    group.permissions.set(Permission.objects.filter(codename__in=["change_group", "view_group"]))
    member = make_user(email="support@example.com", is_staff=True)
    member.groups.add(group)
    client.force_login(member)
    everything = list(Permission.objects.values_list("pk", flat=True))

    changed = client.post(
        f"/admin/auth/group/{group.pk}/change/", {"name": "Support", "permissions": everything}
    )
    added = client.post("/admin/auth/group/add/", {"name": "Mine", "permissions": everything})

    assert changed.status_code == 403
    assert added.status_code == 403
    assert group.permissions.count() == 2
    assert not Group.objects.filter(name="Mine").exists()


def test_a_staff_session_ends_hours_after_sign_in_and_with_the_browser(
    client, make_user, monkeypatch
):
    make_user(email="root@example.com", is_staff=True, is_superuser=True)
    body = {"username": "root@example.com", "password": PASSWORD}

    signed_in = client.post("/admin/login/?next=/admin/", body)
    cookie = signed_in.cookies["sessionid"]
    during_the_day = [client.get("/admin/accounts/user/").status_code for _ in range(3)]
    later = timezone.now() + timedelta(hours=8, minutes=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    next_morning = client.get("/admin/accounts/user/")

    assert signed_in.status_code == 302
    assert (cookie["max-age"], cookie["expires"]) == ("", "")  # gone when the browser closes
    assert during_the_day == [200] * 3
    assert next_morning.status_code == 302
    assert next_morning["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(
    "next_url", ["https://elsewhere.example/", ""], ids=["off the site", "none"]
)
def test_a_staff_sign_in_whose_next_is_off_the_site_lands_on_the_admin(client, make_user, next_url):
    make_user(email="staff@example.com", is_staff=True, is_superuser=True)

    response = client.post(
        f"/admin/login/?next={next_url}",
        {"username": "staff@example.com", "password": PASSWORD, "next": next_url},
        HTTP_SEC_FETCH_SITE="same-origin",
    )

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
