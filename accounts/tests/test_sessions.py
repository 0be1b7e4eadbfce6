"""Refresh rotation, logout, me and password change: what a signed-in client sees."""

import io
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.hashers import make_password
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.test import APIClient
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts import services, tokens
from accounts.models import RevokedTokenFamily, SpentRefreshToken, User
from accounts.tests.test_tokens import claims, sign
from conftest import PASSWORD

REFRESH = "/api/v1/auth/token/refresh/"
LOGOUT = "/api/v1/auth/logout/"
ME = "/api/v1/auth/me/"
CHANGE = "/api/v1/auth/password/change/"
TOKEN_INVALID = {"detail": "The token is invalid, expired or revoked.", "code": "token_invalid"}

pytestmark = pytest.mark.django_db


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def test_refresh_rotates_and_the_old_refresh_token_stops_working(api, pair):
    first = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    reuse = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json")

    assert first.status_code == 200
    new = first.json()
    assert set(new) == {"access", "refresh"}
    assert new["refresh"] != pair["refresh"]
    assert reuse.status_code == 401
    assert reuse.json() == TOKEN_INVALID
    assert api.post(REFRESH, {"refresh": new["refresh"]}, format="json").status_code == 200
    assert bearer(new["access"]).get(ME).status_code == 200


def refresh(api, token: str):
    return api.post(REFRESH, {"refresh": token}, format="json")


def spent_seconds_ago(token: str, seconds: float) -> None:
    SpentRefreshToken.objects.filter(jti=claims(token)["jti"]).update(
        spent_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_spent_refresh_token_used_again_ends_the_chain_it_belongs_to(api, pair, login, caplog):
    # A thief rotated a stolen refresh token; later its owner's copy comes back (or the reverse)
    thiefs = refresh(api, pair["refresh"]).json()
    spent_seconds_ago(pair["refresh"], 31)
    other_device = login()

    reuse = refresh(api, pair["refresh"])

    assert reuse.status_code == 401
    assert reuse.json() == TOKEN_INVALID
    # The chain the stolen token continued is dead: its live token no longer refreshes, and
    # the access tokens of that login stop working at once
    assert refresh(api, thiefs["refresh"]).status_code == 401
    assert bearer(thiefs["access"]).get(ME).status_code == 401
    assert bearer(pair["access"]).get(ME).status_code == 401
    # Sessions of other logins go on
    assert bearer(other_device["access"]).get(ME).status_code == 200
    assert refresh(api, other_device["refresh"]).status_code == 200
    assert "used again: its login's sessions are ended" in caplog.text
    assert pair["refresh"] not in caplog.text


def test_a_refresh_sent_twice_within_the_grace_is_refused_but_keeps_the_chain(api, pair):
    # A client that lost the answer to its refresh and sent it again
    first = refresh(api, pair["refresh"]).json()
    spent_seconds_ago(pair["refresh"], 29)

    assert refresh(api, pair["refresh"]).status_code == 401
    assert refresh(api, first["refresh"]).status_code == 200
    assert not RevokedTokenFamily.objects.exists()


def test_the_grace_is_judged_on_the_databases_clock_not_the_instances(api, pair, monkeypatch):
    # The instance that spent the token runs 40 s behind; the retry lands on one that does not
    first = refresh_on_a_clock(api, pair["refresh"], monkeypatch, behind=timedelta(seconds=40))

    assert refresh(api, pair["refresh"]).status_code == 401
    assert refresh(api, first["refresh"]).status_code == 200
    assert not RevokedTokenFamily.objects.exists()


def refresh_on_a_clock(api, token: str, monkeypatch, *, behind: timedelta) -> dict:
    real_now = timezone.now
    with monkeypatch.context() as patch:
        patch.setattr(timezone, "now", lambda: real_now() - behind)
        response = refresh(api, token)
    assert response.status_code == 200
    return response.json()


def test_rotation_keeps_the_family_and_each_login_starts_its_own(api, pair, login):
    rotated = refresh(api, pair["refresh"]).json()

    assert claims(rotated["refresh"])["fam"] == claims(pair["refresh"])["fam"]
    assert claims(login()["refresh"])["fam"] != claims(pair["refresh"])["fam"]


def test_a_refresh_token_from_before_families_still_rotates(api, pair, user):
    legacy = claims(pair["refresh"])
    del legacy["fam"]
    legacy_token = sign(legacy)

    rotated = refresh(api, legacy_token)
    spent_seconds_ago(legacy_token, 60)

    assert rotated.status_code == 200
    assert refresh(api, legacy_token).status_code == 401
    # Its successor starts a family, so the chain is covered from here on
    successor = rotated.json()["refresh"]
    assert len(claims(successor)["fam"]) == 32
    assert refresh(api, successor).status_code == 200


@pytest.mark.parametrize("family", [42, "not-a-uuid", ["x"], {"a": 1}])
def test_a_signed_refresh_token_with_a_malformed_family_is_refused(api, pair, family):
    token = sign({**claims(pair["refresh"]), "fam": family})

    assert refresh(api, token).status_code == 401


def test_an_access_token_carries_its_logins_family(pair):
    assert claims(pair["access"])["fam"] == claims(pair["refresh"])["fam"]


def test_an_access_token_from_before_families_still_works(pair):
    legacy = claims(pair["access"])
    del legacy["fam"]

    assert bearer(sign(legacy)).get(ME).status_code == 200


@pytest.mark.parametrize("family", [42, "not-a-uuid", ["x"], {"a": 1}, "0" * 33])
def test_a_signed_access_token_with_a_malformed_family_is_401(pair, family):
    response = bearer(sign({**claims(pair["access"]), "fam": family})).get(ME)

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


def test_flushexpiredtokens_forgets_revoked_families_after_their_tokens_expired(api, pair, user):
    now = timezone.now()
    RevokedTokenFamily.objects.create(
        family="0" * 32, user=user, revoked_at=now, expires_at=now - timedelta(hours=2)
    )
    RevokedTokenFamily.objects.create(family="1" * 32, user=user, revoked_at=now, expires_at=now)

    assert tokens.expired_spent_tokens_delete() == 1
    assert [row.family.hex for row in RevokedTokenFamily.objects.all()] == ["1" * 32]


def test_an_ended_login_is_remembered_until_its_access_tokens_expire(api, user, monkeypatch):
    # An operator may set JWT_ACCESS_LIFETIME longer than JWT_REFRESH_LIFETIME: the login's
    # record must then outlive its access tokens, or the daily sweep would bring them back
    for token_class, setting, lifetime in (
        (AccessToken, "ACCESS_TOKEN_LIFETIME", timedelta(days=2)),
        (RefreshToken, "REFRESH_TOKEN_LIFETIME", timedelta(days=1)),
    ):
        monkeypatch.setattr(token_class, "lifetime", lifetime)
        monkeypatch.setattr(api_settings, setting, lifetime)
    pair = services.user_login(email=user.email, password=PASSWORD)
    assert (
        bearer(pair["access"]).post(LOGOUT, {"refresh": pair["refresh"]}, format="json").status_code
        == 204
    )

    a_day_and_two_hours_later = timezone.now() + timedelta(days=1, hours=2)
    with mock.patch("django.utils.timezone.now", return_value=a_day_and_two_hours_later):
        tokens.expired_spent_tokens_delete()

    assert bearer(pair["access"]).get(ME).status_code == 401
    ended = RevokedTokenFamily.objects.get()
    assert ended.expires_at.timestamp() >= claims(pair["access"])["exp"]


GARBAGE = ["", " ", "abc", "a.b.c", "abc\u0000def", "x" * 2048, "x" * 5000]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_refresh_with_garbage_is_401_token_invalid(api, garbage):
    response = api.post(REFRESH, {"refresh": garbage}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


@pytest.mark.parametrize("body", [{}, {"refresh": 42}, {"refresh": None}, {"refresh": ["x"]}])
def test_refresh_without_a_token_string_is_a_400_field_error(api, body):
    response = api.post(REFRESH, body, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"refresh"}


def test_access_token_is_not_accepted_as_refresh(api, pair):
    response = api.post(REFRESH, {"refresh": pair["access"]}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


def test_refresh_of_deactivated_user_is_rejected(api, user, pair):
    user.is_active = False
    user.save()

    response = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 401


def test_logout_blacklists_the_refresh_token(auth_api, api, pair):
    response = auth_api.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 204
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_logout_signs_the_login_out_at_once_access_tokens_included(auth_api, api, pair, login):
    rotated = refresh(api, pair["refresh"]).json()
    other_device = login()

    response = bearer(rotated["access"]).post(
        LOGOUT, {"refresh": rotated["refresh"]}, format="json"
    )

    assert response.status_code == 204
    # Every access token of that login stops working, not only after its 5 minutes
    for access in (pair["access"], rotated["access"]):
        me = bearer(access).get(ME)
        assert me.status_code == 401
        assert me.json() == TOKEN_INVALID
    assert refresh(api, rotated["refresh"]).status_code == 401
    # The user's other logins go on
    assert bearer(other_device["access"]).get(ME).status_code == 200
    assert refresh(api, other_device["refresh"]).status_code == 200


def test_logout_from_one_device_of_another_ends_only_the_login_it_names(api, pair, login):
    other_device = login()

    response = bearer(other_device["access"]).post(
        LOGOUT, {"refresh": pair["refresh"]}, format="json"
    )

    assert response.status_code == 204
    assert bearer(pair["access"]).get(ME).status_code == 401
    assert bearer(other_device["access"]).get(ME).status_code == 200


def test_logout_needs_a_bearer_token(api, pair):
    response = api.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("garbage", GARBAGE)
def test_logout_with_garbage_is_401_token_invalid(auth_api, garbage):
    response = auth_api.post(LOGOUT, {"refresh": garbage}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


def test_logout_with_a_token_its_refresh_just_spent_still_ends_the_login(
    auth_api, api, pair, login
):
    # The app's timed refresh and the tap on "log out" race: the logout carries the old token.
    rotated = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").json()
    other_device = login()

    response = auth_api.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 204
    assert bearer(rotated["access"]).get(ME).status_code == 401
    assert refresh(api, rotated["refresh"]).status_code == 401
    # The user's other logins go on
    assert refresh(api, other_device["refresh"]).status_code == 200


def test_logout_of_a_login_already_ended_is_401(api, pair, login):
    rotated = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").json()
    other_device = bearer(login()["access"])
    assert (
        bearer(rotated["access"])
        .post(LOGOUT, {"refresh": rotated["refresh"]}, format="json")
        .status_code
        == 204
    )

    twice = other_device.post(LOGOUT, {"refresh": rotated["refresh"]}, format="json")
    spent = other_device.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")

    assert (twice.status_code, spent.status_code) == (401, 401)
    assert twice.json() == spent.json() == TOKEN_INVALID


def test_a_login_ended_by_logout_stays_ended_after_the_daily_cleanup(api, pair, login, monkeypatch):
    # Given a login that rotated once and then logged out
    rotated = refresh(api, pair["refresh"]).json()
    assert (
        bearer(rotated["access"])
        .post(LOGOUT, {"refresh": rotated["refresh"]}, format="json")
        .status_code
        == 204
    )

    # When the daily cleanup runs a day later, while that login's refresh tokens have days left
    real_now = timezone.now
    with monkeypatch.context() as patch:
        patch.setattr(timezone, "now", lambda: real_now() + timedelta(days=1))
        call_command("flushexpiredtokens", stdout=io.StringIO())

    # Then a logout with its spent token is still one of a login already ended
    response = bearer(login()["access"]).post(LOGOUT, {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


def test_logout_with_a_spent_token_after_a_password_change_is_401(api, pair, login, user):
    api.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    user.set_password("a brand new passphrase 42")
    user.save()
    new_login = bearer(login(password="a brand new passphrase 42")["access"])

    response = new_login.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


def test_logout_cannot_revoke_another_users_token(api, make_user, login, pair):
    make_user(email="eve@example.com")
    eve = bearer(login(email="eve@example.com")["access"])

    response = eve.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 401
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 200


def test_every_401_names_the_bearer_scheme(api, make_user, login, pair):
    make_user(email="eve@example.com")
    eve = bearer(login(email="eve@example.com")["access"])

    responses = [
        api.post(REFRESH, {"refresh": "garbage"}, format="json"),
        api.post(REFRESH, {"refresh": pair["access"]}, format="json"),
        api.post(LOGOUT, {"refresh": pair["refresh"]}, format="json"),
        eve.post(LOGOUT, {"refresh": pair["refresh"]}, format="json"),
        api.get(ME),
        bearer("garbage").get(ME),
    ]

    for response in responses:
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_me_returns_the_signed_in_user(auth_api, user):
    response = auth_api.get(ME)

    assert response.status_code == 200
    assert response.json() == {
        "id": user.id,
        "email": "ada@example.com",
        "full_name": "Ada Lovelace",
        "date_joined": user.date_joined.isoformat().replace("+00:00", "Z"),
    }


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer garbage", "Token abc", "Bearer a.b.c", "Bearer " + "x" * 4000],
)
def test_me_without_a_valid_token_is_401_json(header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(ME)

    assert response.status_code == 401
    assert set(response.json()) == {"detail", "code"}


def test_me_rejects_refresh_token_as_access(pair):
    assert bearer(pair["refresh"]).get(ME).status_code == 401


def test_me_rejects_tokens_of_a_deactivated_user(auth_api, user):
    # Once served, the token is remembered as verified; the user is still checked each time.
    assert auth_api.get(ME).status_code == 200
    user.is_active = False
    user.save()

    response = auth_api.get(ME)

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


def test_password_change_revokes_every_session(auth_api, api, pair, login):
    other = login()
    assert auth_api.get(ME).status_code == 200

    response = auth_api.post(
        CHANGE,
        {"current_password": PASSWORD, "new_password": "a-brand-new-passphrase"},
        format="json",
    )

    assert response.status_code == 204
    assert auth_api.get(ME).status_code == 401
    for old in (pair, other):
        assert api.post(REFRESH, {"refresh": old["refresh"]}, format="json").status_code == 401
    login(password="a-brand-new-passphrase")


def test_password_change_rejects_wrong_current_password(auth_api):
    response = auth_api.post(
        CHANGE,
        {"current_password": "wrong-one-here", "new_password": "a-new-pass-1"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"current_password": ["The current password is incorrect."]}


def test_password_change_rejects_weak_new_password_and_keeps_the_old(auth_api, login):
    response = auth_api.post(
        CHANGE, {"current_password": PASSWORD, "new_password": "123"}, format="json"
    )

    assert response.status_code == 400
    assert "new_password" in response.json()
    assert auth_api.get(ME).status_code == 200
    login()


def test_password_change_to_the_current_password_is_refused_and_ends_nothing(auth_api, login):
    response = auth_api.post(
        CHANGE, {"current_password": PASSWORD, "new_password": PASSWORD}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "new_password": ["The new password must differ from the current one."]
    }
    assert auth_api.get(ME).status_code == 200


def test_of_two_changes_that_proved_the_same_password_only_the_first_is_saved(
    user, login, eager_tasks
):
    # Both requests loaded the user, and so the hash they check, before either saved
    first, second = (User.objects.get(pk=user.pk) for _ in range(2))

    services.password_change(
        user=first, current_password=PASSWORD, new_password="the first new passphrase"
    )
    with pytest.raises(ValidationError) as refused:
        services.password_change(
            user=second, current_password=PASSWORD, new_password="the second new passphrase"
        )

    # The second hears its current password is wrong, as it now is; the first one's holds
    assert refused.value.detail == {"current_password": ["The current password is incorrect."]}
    login(password="the first new passphrase")
    assert len(mail.outbox) == 1


def test_a_change_racing_another_does_not_bring_back_the_old_password_by_rehashing_it(
    user, login, eager_tasks
):
    # Given a hash from an older hasher, which a successful check would upgrade and save
    user.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    user.save(update_fields=["password"])
    first, second = (User.objects.get(pk=user.pk) for _ in range(2))

    services.password_change(
        user=first, current_password=PASSWORD, new_password="the first new passphrase"
    )
    with pytest.raises(ValidationError):
        services.password_change(
            user=second, current_password=PASSWORD, new_password="the second new passphrase"
        )

    # The late request's check did not write a fresh hash of the old password over the change
    login(password="the first new passphrase")


def test_password_change_needs_a_bearer_token(api):
    response = api.post(CHANGE, {"current_password": "a", "new_password": "b"}, format="json")

    assert response.status_code == 401


def test_a_login_ended_for_reuse_stays_ended_after_the_daily_cleanup(api, pair, monkeypatch):
    # Given a chain ended because a spent refresh token came back after the grace
    thiefs = refresh(api, pair["refresh"]).json()
    spent_seconds_ago(pair["refresh"], 31)
    assert refresh(api, pair["refresh"]).status_code == 401

    # When the daily cleanup runs a day later, while the thief's refresh token has days left
    real_now = timezone.now
    with monkeypatch.context() as patch:
        patch.setattr(timezone, "now", lambda: real_now() + timedelta(days=1))
        call_command("flushexpiredtokens", stdout=io.StringIO())

    # Then the chain stays ended: the thief's token still refreshes nothing
    assert refresh(api, thiefs["refresh"]).status_code == 401


def test_a_wrong_current_password_is_reported_even_with_a_weak_new_one(auth_api):
    # Given someone who does not know the current password (a stolen session), when they try
    # a change with a new password the validators refuse too
    response = auth_api.post(
        CHANGE, {"current_password": "wrong-one-here", "new_password": "123"}, format="json"
    )

    # Then they hear only that the current password is wrong, as for any other new password
    assert response.status_code == 400
    assert response.json() == {"current_password": ["The current password is incorrect."]}
