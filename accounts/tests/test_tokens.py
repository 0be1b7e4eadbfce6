"""Forged, altered and foreign JWTs are refused; spent refresh tokens are remembered until they
expire, and only their ids are stored."""

import base64
import json
import time
from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import jwt
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import OperationalError, connection
from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import SpentRefreshToken
from conftest import PASSWORD

ME = "/api/v1/auth/me/"
REFRESH = "/api/v1/auth/token/refresh/"
LOGOUT = "/api/v1/auth/logout/"
TOKEN_INVALID = {"detail": "The token is invalid, expired or revoked.", "code": "token_invalid"}

pytestmark = pytest.mark.django_db


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def sign(payload: dict, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key or settings.SIMPLE_JWT["SIGNING_KEY"], algorithm=algorithm)


def me_with(token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(ME)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_re_signed_copy_of_a_valid_token_is_accepted(pair):
    """Guards the tests below: they change exactly one thing about a token that works."""
    assert me_with(sign(claims(pair["access"]))).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "another-service"},
        {"iss": "someone-else"},
        {"exp": 1_000_000_000},
        {"token_type": "refresh"},
    ],
    ids=["wrong-audience", "wrong-issuer", "expired", "wrong-type"],
)
def test_access_token_with_a_wrong_claim_is_refused(pair, change):
    response = me_with(sign({**claims(pair["access"]), **change}))

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


@pytest.mark.parametrize("missing", ["aud", "iss"])
def test_access_token_without_audience_or_issuer_is_refused(pair, missing):
    payload = {key: value for key, value in claims(pair["access"]).items() if key != missing}

    assert me_with(sign(payload)).status_code == 401


def test_an_expired_refresh_token_is_401_token_invalid(api, pair):
    expired = sign({**claims(pair["refresh"]), "exp": int(time.time()) - 1})

    response = api.post(REFRESH, {"refresh": expired}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID
    # the same token re-signed unexpired still works: expiry alone was refused
    fresh = sign(claims(pair["refresh"]))
    assert api.post(REFRESH, {"refresh": fresh}, format="json").status_code == 200


def test_tokens_work_at_once_on_an_instance_whose_clock_runs_behind_the_issuers(api, user):
    # Any web instance may get the next request; one whose clock is a second or two behind
    # the instance that signed the user in or rotated the pair must take the new tokens
    ahead = timezone.now() + timedelta(seconds=3)
    with mock.patch("rest_framework_simplejwt.tokens.aware_utcnow", return_value=ahead):
        pair = api.post(
            "/api/v1/auth/login/", {"email": user.email, "password": PASSWORD}, format="json"
        ).json()
        rotated = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").json()

    assert me_with(pair["access"]).status_code == 200
    assert me_with(rotated["access"]).status_code == 200
    assert api.post(REFRESH, {"refresh": rotated["refresh"]}, format="json").status_code == 200


def test_refresh_token_for_another_audience_is_refused(api, pair):
    forged = sign({**claims(pair["refresh"]), "aud": "another-service"})

    response = api.post(REFRESH, {"refresh": forged}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


def test_unsigned_alg_none_token_is_refused(pair):
    header = {"alg": "none", "typ": "JWT"}
    unsigned = f"{b64(header)}.{b64(claims(pair['access']))}."

    assert me_with(unsigned).status_code == 401


def test_token_signed_with_another_key_is_refused(pair):
    forged = sign(claims(pair["access"]), key="a-different-key-that-is-long-enough-000000")

    assert me_with(forged).status_code == 401


def test_tampered_payload_is_refused(pair, make_user):
    other = make_user(email="eve@example.com")
    header, _, signature = pair["access"].split(".")
    payload = b64({**claims(pair["access"]), "user_id": str(other.pk)})

    assert me_with(f"{header}.{payload}.{signature}").status_code == 401


def test_tampered_signature_is_refused(pair):
    header, payload, signature = pair["access"].split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    assert me_with(f"{header}.{payload}.{flipped}").status_code == 401


def test_access_token_stops_working_after_a_password_change(user, pair):
    user.set_password("an-entirely-new-passphrase")
    user.save()

    assert me_with(pair["access"]).status_code == 401


def test_deactivated_users_access_and_refresh_tokens_are_refused(api, user, pair):
    user.is_active = False
    user.save()

    assert me_with(pair["access"]).status_code == 401
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_flushexpiredtokens_forgets_spent_tokens_an_hour_after_they_expired(api, user, pair, login):
    just_expired, long_expired = login()["refresh"], login()["refresh"]
    for spent in (pair["refresh"], just_expired, long_expired):
        assert api.post(REFRESH, {"refresh": spent}, format="json").status_code == 200
    for token, ago in ((just_expired, timedelta(minutes=59)), (long_expired, timedelta(hours=1))):
        SpentRefreshToken.objects.filter(jti=claims(token)["jti"]).update(
            expires_at=timezone.now() - ago - timedelta(seconds=1)
        )

    call_command("flushexpiredtokens")

    # A server whose clock runs a little behind may still take a token just expired: its
    # record stays a while, so it cannot be spent twice
    assert sorted(str(row.jti.hex) for row in SpentRefreshToken.objects.all()) == sorted(
        [claims(pair["refresh"])["jti"], claims(just_expired)["jti"]]
    )
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_rotation_records_the_spent_token_and_its_successor_works(api, user, pair):
    rotated = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").json()

    record = SpentRefreshToken.objects.get()
    assert record.jti.hex == claims(pair["refresh"])["jti"]
    assert record.user == user
    assert record.expires_at.timestamp() == claims(pair["refresh"])["exp"]
    assert claims(rotated["access"])["hash_password"] == claims(pair["access"])["hash_password"]
    assert me_with(rotated["access"]).status_code == 200
    assert api.post(REFRESH, {"refresh": rotated["refresh"]}, format="json").status_code == 200


def test_no_table_holds_a_token_that_works(api, auth_api, user, pair, login):
    # A copy of the database (a backup, a replica) must not let anyone sign in as a user.
    rotated = api.post(REFRESH, {"refresh": login()["refresh"]}, format="json").json()
    auth_api.post("/api/v1/auth/logout/", {"refresh": rotated["refresh"]}, format="json")
    issued = [pair["refresh"], pair["access"], rotated["refresh"], rotated["access"]]

    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            for token in issued:
                signature = token.rsplit(".", 1)[1]
                cursor.execute(
                    f"SELECT count(*) FROM {connection.ops.quote_name(table)} row "  # noqa: S608
                    "WHERE strpos(row::text, %s) > 0",
                    [signature],
                )
                assert cursor.fetchone()[0] == 0, table


@pytest.mark.parametrize(
    ("claim", "value"),
    [("jti", "0" * 31), ("jti", 5), ("jti", None), ("hash_password", 5), ("hash_password", None)],
)
def test_a_signed_refresh_token_with_malformed_claims_is_refused(api, pair, claim, value):
    forged = {**claims(pair["refresh"]), claim: value}

    response = api.post(REFRESH, {"refresh": sign(forged)}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


@pytest.mark.parametrize("user_id", ["not-a-number", None, "999999999", "9" * 30])
def test_a_signed_refresh_token_naming_no_user_is_refused(api, pair, user_id):
    forged = {**claims(pair["refresh"]), "user_id": user_id}

    response = api.post(REFRESH, {"refresh": sign(forged)}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


@pytest.mark.parametrize(
    "exp", [10**12, 10**20, "4102444800"], ids=["year-33658", "past-time_t", "digits-string"]
)
def test_a_token_signed_with_our_key_but_an_impossible_expiry_is_refused(pair, exp):
    access = me_with(sign({**claims(pair["access"]), "exp": exp}))
    forged_refresh = {"refresh": sign({**claims(pair["refresh"]), "exp": exp})}
    refresh = APIClient().post(REFRESH, forged_refresh, format="json")
    signed_in = APIClient()
    signed_in.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    logout = signed_in.post("/api/v1/auth/logout/", forged_refresh, format="json")

    assert (access.status_code, refresh.status_code, logout.status_code) == (401, 401, 401)
    assert access.json() == refresh.json() == logout.json() == TOKEN_INVALID


def test_a_refresh_token_with_a_mangled_password_digest_is_refused(pair):
    mangled = sign({**claims(pair["refresh"]), "hash_password": "abc\x00def"})

    response = APIClient().post(REFRESH, {"refresh": mangled}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


@contextmanager
def spend_answer_lost(*, applied: bool, statement: str = "INSERT INTO accounts_spentrefreshtoken"):
    """The statement that spends a refresh token (or another holding `statement`) fails with
    the connection: after PostgreSQL applied it (its answer was lost), or before it reached
    PostgreSQL."""
    real_execute = CursorWrapper.execute
    lost = []

    def execute(self, sql, params=None):
        if lost or statement not in sql:
            return real_execute(self, sql, params)
        lost.append(sql)
        if applied:
            real_execute(self, sql, params)
        raise OperationalError("server closed the connection unexpectedly")

    with mock.patch.object(CursorWrapper, "execute", execute):
        yield lost


@pytest.mark.django_db(transaction=True)
def test_a_rotation_whose_answer_is_lost_still_gives_the_client_its_successor(
    api, user, pair, caplog
):
    with spend_answer_lost(applied=True) as lost:
        rotated = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json")

    assert lost
    # The token is spent either way, so the client gets what it was spent for, not a 503
    # whose retry could only be refused
    assert rotated.status_code == 200
    assert "spent although its answer was lost" in caplog.text
    successor = rotated.json()
    assert me_with(successor["access"]).status_code == 200
    assert api.post(REFRESH, {"refresh": successor["refresh"]}, format="json").status_code == 200
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").json() == TOKEN_INVALID


@pytest.mark.django_db(transaction=True)
def test_a_rotation_that_never_reached_the_database_is_a_503_and_the_token_still_works(
    api, user, pair
):
    with spend_answer_lost(applied=False):
        failed = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json")

    assert failed.status_code == 503
    assert failed.json()["code"] == "service_unavailable"
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_logout_with_a_spent_token_whose_answer_is_lost_is_a_logout(api, auth_api, pair):
    successor = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").json()
    # The statement that ends the login alone (its token spent already), not the spend's
    ending = "FROM holder\nON CONFLICT (family)"

    with spend_answer_lost(applied=True, statement=ending) as lost:
        response = auth_api.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")

    assert lost
    assert response.status_code == 204
    assert api.post(REFRESH, {"refresh": successor["refresh"]}, format="json").status_code == 401


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("applied", [True, False])
def test_a_logout_of_a_login_already_ended_stays_401_when_a_connection_drops(
    api, auth_api, pair, login, applied
):
    successor = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").json()
    assert auth_api.post(LOGOUT, {"refresh": successor["refresh"]}, format="json").status_code == (
        204
    )
    other_device = APIClient()  # signed in still: the ended login's access tokens are not
    other_device.credentials(HTTP_AUTHORIZATION=f"Bearer {login()['access']}")
    ending = "FROM holder\nON CONFLICT (family)"

    with spend_answer_lost(applied=applied, statement=ending):
        response = other_device.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID


@pytest.mark.django_db(transaction=True)
def test_a_logout_whose_answer_is_lost_is_a_logout(api, auth_api, user, pair):
    with spend_answer_lost(applied=True) as lost:
        response = auth_api.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")

    assert lost
    assert response.status_code == 204
    assert api.post(REFRESH, {"refresh": pair["refresh"]}, format="json").json() == TOKEN_INVALID
    assert auth_api.get(ME).json() == TOKEN_INVALID  # the login ended with it
