"""How passwords are stored and which ones are refused."""

import threading
from unittest import mock

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from django.contrib.auth.hashers import make_password

from accounts import hash_pool, services, tokens
from accounts.hashers import Argon2idHasher
from accounts.models import User
from auth_service.exceptions import HashingBusy
from conftest import PASSWORD, read_only_database

LOGIN = "/api/v1/auth/login/"
REFRESH = "/api/v1/auth/token/refresh/"

pytestmark = pytest.mark.django_db


def argon2_parameters(encoded: str):
    return extract_parameters(encoded.removeprefix("argon2"))


def test_new_passwords_are_stored_as_argon2id_at_owasp_cost(user):
    parameters = argon2_parameters(user.password)

    assert user.password.startswith("argon2$argon2id$")
    assert parameters.type is Type.ID
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (9216, 4, 1)


@pytest.mark.parametrize(
    ("memory_cost", "time_cost", "parallelism"),
    [(102400, 2, 8), (19456, 2, 1)],
    ids=["django-default", "earlier-owasp-19mib"],
)
def test_hash_made_with_other_argon2_parameters_is_rehashed_on_login(
    api, user, memory_cost, time_cost, parallelism
):
    old = PasswordHasher(
        memory_cost=memory_cost, time_cost=time_cost, parallelism=parallelism
    ).hash(PASSWORD)
    user.password = "argon2" + old
    user.save()

    response = api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")

    assert response.status_code == 200
    user.refresh_from_db()
    parameters = argon2_parameters(user.password)
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (9216, 4, 1)
    # The pair is issued for the re-hashed password, so it works right away.
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {response.data['access']}")
    assert api.get("/api/v1/auth/me/").status_code == 200
    refreshed = api.post(REFRESH, {"refresh": response.data["refresh"]}, format="json")
    assert refreshed.status_code == 200


class EarlierArgon2idHasher(Argon2idHasher):
    """The parameters stored hashes had before 9 MiB x 4."""

    memory_cost = 19456
    time_cost = 2


def test_rehash_on_login_ends_the_sessions_issued_under_the_old_hash(api, user):
    # Refresh tokens carry a digest of the stored hash; a re-hash changes it, as a new
    # password does (SECURITY.md).
    user.password = make_password(PASSWORD, hasher=EarlierArgon2idHasher())
    user.save()
    earlier = tokens.token_pair_for(user=user)

    login = api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")

    assert login.status_code == 200
    refreshed = api.post(REFRESH, {"refresh": earlier["refresh"]}, format="json")
    assert refreshed.status_code == 401
    assert refreshed.json()["code"] == "token_invalid"


def test_a_login_whose_re_hash_is_refused_as_busy_still_signs_in(api, user, monkeypatch):
    user.password = make_password(PASSWORD, hasher=EarlierArgon2idHasher())
    user.save()
    earlier = user.password
    busy = mock.Mock(side_effect=HashingBusy())
    monkeypatch.setattr("accounts.models.hashers.make_password", busy)

    login = api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")

    assert login.status_code == 200
    assert busy.called
    user.refresh_from_db()
    assert user.password == earlier  # upgraded on a later sign-in


@pytest.mark.django_db(transaction=True)
def test_a_login_whose_re_hash_the_database_refuses_to_write_still_signs_in(api, user, caplog):
    # Given a hash made with earlier parameters, and PostgreSQL refusing writes (a standby
    # during a failover): README promises login keeps working, as logging in writes nothing
    user.password = make_password(PASSWORD, hasher=EarlierArgon2idHasher())
    user.save()
    earlier = user.password
    with read_only_database():
        login = api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {login.json().get('access')}")
        me = api.get("/api/v1/auth/me/")

    # Then the password holds and its tokens work: the re-hash waits for a later sign-in
    assert login.status_code == 200
    assert me.status_code == 200
    user.refresh_from_db()
    assert user.password == earlier
    assert "re-hash of user" in caplog.text
    refreshed = api.post(REFRESH, {"refresh": login.json()["refresh"]}, format="json")
    assert refreshed.status_code == 200


def test_a_login_refused_while_hashing_is_busy_is_a_503_logged_as_a_warning(
    api, user, monkeypatch, caplog
):
    monkeypatch.setattr("accounts.hashers.hash_run", mock.Mock(side_effect=HashingBusy()))
    caplog.set_level("INFO")

    login = api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")

    assert login.status_code == 503
    assert login["Retry-After"] == "1"
    # The load shedding at work: one warning, not an error (with a traceback) per refusal
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= 30] == [
        ("WARNING", "password hashing busy: request refused (503, Retry-After 1)")
    ]


def test_legacy_pbkdf2_hash_still_verifies_in_the_hash_threads(user, monkeypatch):
    user.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    user.save()
    threads = []
    run = hash_pool.hash_run

    def recording(function, *args):
        return run(lambda: (threads.append(threading.current_thread().name), function(*args))[1])

    monkeypatch.setattr("accounts.hashers.hash_run", recording)

    assert not user.check_password("not the password")
    assert threads
    assert all(name.startswith("password-hash") for name in threads)
    assert user.check_password(PASSWORD)
    user.refresh_from_db()
    assert user.password.startswith("argon2$")  # upgraded on that login


# 128 characters without a repeating pattern
LONGEST = "-".join(f"word{n}" for n in range(30))[:128]


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("nine-char", False),
        ("ten-chars!", True),
        (LONGEST, True),
        (LONGEST + "y", False),
        ("qwertyuiop", False),
        ("98765432109876", False),
        ("y" * 20, False),
        ("passwordpasswordpass", False),
        ("sunflower7sunflower7", False),  # a block twice, no more
        ("abcdefghijklmn", False),
        ("ZYXWVUTSRQPONM", False),
        ("abcdefghijklmnX", True),
        ("passwordpasswordX", True),
    ],
)
def test_password_validators_enforce_length_commonness_digits_and_patterns(api, password, accepted):
    body = {"full_name": "Grace Hopper", "email": "grace@example.com", "password": password}

    response = api.post("/api/v1/auth/register/", body, format="json")

    assert response.status_code == (201 if accepted else 400), response.content


@pytest.mark.parametrize("password", ["grace.hopper", "gracehopper1906", "hopper-grace"])
def test_a_password_like_the_full_name_is_refused(api, password):
    body = {"full_name": "Grace Hopper", "email": "rear.admiral@example.com", "password": password}

    response = api.post("/api/v1/auth/register/", body, format="json")

    assert response.status_code == 400
    assert "too similar to the full name" in response.json()["password"][0]


def test_two_logins_that_both_rehash_the_same_password_both_sign_in(api, user, monkeypatch):
    # Given a hash from earlier parameters, which a successful login re-hashes and saves
    user.password = make_password(PASSWORD, hasher=EarlierArgon2idHasher())
    user.save()
    verify = Argon2idHasher.verify

    def other_login_lands_while_verifying(hasher, password, encoded):
        # Another login with the same password (a second device, a retry) verifies the same
        # hash and saves its re-hash first.
        monkeypatch.setattr(Argon2idHasher, "verify", verify)
        assert User.objects.get(pk=user.pk).check_password(PASSWORD)
        return verify(hasher, password, encoded)

    monkeypatch.setattr(Argon2idHasher, "verify", other_login_lands_while_verifying)

    login = api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")

    # The password still holds: the right one is not answered as wrong credentials
    assert login.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {login.data['access']}")
    assert api.get("/api/v1/auth/me/").status_code == 200
    refreshed = api.post(REFRESH, {"refresh": login.data["refresh"]}, format="json")
    assert refreshed.status_code == 200


def test_a_reset_during_a_login_is_not_undone_by_the_login_rehashing_the_old_password(
    api, user, monkeypatch, eager_tasks
):
    # Given a hash from earlier parameters, which a successful login re-hashes and saves
    user.password = make_password(PASSWORD, hasher=EarlierArgon2idHasher())
    user.save()
    verify = Argon2idHasher.verify

    def reset_lands_while_verifying(hasher, password, encoded):
        # Another request commits a new password after the login has read the stored hash.
        monkeypatch.setattr(Argon2idHasher, "verify", verify)
        services.password_set(user=User.objects.get(pk=user.pk), password="a brand new passphrase")
        return verify(hasher, password, encoded)

    monkeypatch.setattr(Argon2idHasher, "verify", reset_lands_while_verifying)

    login = api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")

    # The old password no longer holds, and the new one still does
    assert login.status_code == 401
    assert login.json()["code"] == "invalid_credentials"
    new = api.post(
        LOGIN, {"email": user.email, "password": "a brand new passphrase"}, format="json"
    )
    assert new.status_code == 200
