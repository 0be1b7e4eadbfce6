"""The fast paths answer exactly as the slow ones: a remembered access token, the precompiled
user lookups, the direct user payload, the unrecorded login, content negotiation."""

import time
import uuid
from datetime import timedelta

import jwt
import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts import serializers
from accounts.models import RevokedTokenFamily, SpentRefreshToken, User
from conftest import PASSWORD

ME = "/api/v1/auth/me/"
TOKEN_INVALID = {"detail": "The token is invalid, expired or revoked.", "code": "token_invalid"}

pytestmark = pytest.mark.django_db


def jwt_claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def test_a_token_served_before_is_still_refused_once_it_expires(user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=2))
    client = bearer(str(token))
    assert client.get(ME).status_code == 200

    time.sleep(max(0.0, token["exp"] - time.time()) + 0.05)
    response = client.get(ME)

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


def test_a_tampered_token_is_refused_while_the_genuine_one_is_remembered(user, pair):
    header, payload, signature = str(AccessToken.for_user(user)).split(".")
    tampered = ".".join([header, payload, signature[::-1]])
    assert bearer(pair["access"]).get(ME).status_code == 200

    assert bearer(tampered).get(ME).status_code == 401


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_recognised_in_any_letter_case(pair, scheme):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {pair['access']}")

    assert client.get(ME).status_code == 200


def test_user_lookup_loads_the_same_row_as_the_orm(make_user):
    user = make_user(full_name="Grace Hopper")

    loaded = User.objects.active_in_session(str(user.pk), None)

    expected = User.objects.get(pk=user.pk)
    assert loaded is not None
    assert {f.attname: getattr(loaded, f.attname) for f in User._meta.concrete_fields} == {
        f.attname: getattr(expected, f.attname) for f in User._meta.concrete_fields
    }
    assert loaded._state.adding is False
    assert loaded._state.db == "default"


@pytest.mark.parametrize("user_id", [None, "", "abc", "1.5", [], 10**6])
def test_user_lookup_finds_nobody_for_ids_that_name_no_user(user, user_id):
    assert User.objects.active_in_session(user_id, None) is None


def test_user_lookup_skips_inactive_users(make_user):
    user = make_user(is_active=False)

    assert User.objects.active_in_session(user.pk, None) is None


def test_user_lookup_skips_users_of_an_ended_login_only(user):
    ended, live = uuid.uuid4(), uuid.uuid4()
    now = timezone.now()
    RevokedTokenFamily.objects.create(
        family=ended, user=user, revoked_at=now, expires_at=now + timedelta(days=7)
    )

    assert User.objects.active_in_session(user.pk, ended.hex) is None
    assert User.objects.active_in_session(user.pk, live.hex) == user
    assert User.objects.active_in_session(user.pk, None) == user


def test_user_payload_matches_the_documented_serializer(user):
    assert serializers.user_data(user) == serializers.UserSerializer(user).data


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/*"])
def test_me_answers_json_to_clients_that_accept_it(auth_api, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = auth_api.get(ME, **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_me_refuses_a_client_that_accepts_no_json_with_a_json_406(auth_api):
    response = auth_api.get(ME, HTTP_ACCEPT="text/html")

    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_acceptable"


def test_lookup_by_email_ignores_case_and_surrounding_space(make_user):
    user = make_user(email="grace@example.com")

    found = User.objects.get_by_natural_key("  Grace@Example.COM ")

    assert found.pk == user.pk
    assert found.check_password(PASSWORD)


def test_lookup_by_unknown_email_raises_does_not_exist(user):
    with pytest.raises(User.DoesNotExist):
        User.objects.get_by_natural_key("nobody@example.com")


def test_login_records_nothing_and_its_refresh_token_works_once(api, user, login):
    pair = login()

    assert not SpentRefreshToken.objects.exists()
    assert jwt_claims(pair["access"])["user_id"] == str(user.pk)
    assert jwt_claims(pair["refresh"])["user_id"] == str(user.pk)
    refresh = {"refresh": pair["refresh"]}
    assert api.post("/api/v1/auth/token/refresh/", refresh, format="json").status_code == 200
    assert api.post("/api/v1/auth/token/refresh/", refresh, format="json").status_code == 401
