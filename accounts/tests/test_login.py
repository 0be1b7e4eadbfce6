import pytest
from django.contrib.auth.hashers import make_password

from conftest import PASSWORD

URL = "/api/v1/auth/login/"

pytestmark = pytest.mark.django_db


def test_login_returns_access_and_refresh(api, user):
    response = api.post(URL, {"email": user.email, "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_login_email_is_case_insensitive(api, user):
    response = api.post(URL, {"email": "ADA@Example.com", "password": PASSWORD}, format="json")

    assert response.status_code == 200


def test_wrong_password_unknown_email_and_inactive_user_get_the_same_401(api, make_user):
    make_user(email="ada@example.com")
    make_user(email="off@example.com", is_active=False)

    wrong = api.post(URL, {"email": "ada@example.com", "password": "nope-nope-nope"}, format="json")
    unknown = api.post(URL, {"email": "who@example.com", "password": PASSWORD}, format="json")
    inactive = api.post(URL, {"email": "off@example.com", "password": PASSWORD}, format="json")

    for response in (wrong, unknown, inactive):
        assert response.status_code == 401
        assert response.json() == {
            "detail": "No active account found with the given credentials.",
            "code": "invalid_credentials",
        }
    assert wrong.content == unknown.content == inactive.content
    assert wrong["WWW-Authenticate"] == unknown["WWW-Authenticate"] == inactive["WWW-Authenticate"]


@pytest.mark.parametrize(
    "body",
    [{}, {"email": "ada@example.com"}, {"password": PASSWORD}, {"email": ["x"], "password": 1}],
)
def test_login_rejects_malformed_body_with_400(api, body):
    response = api.post(URL, body, format="json")

    assert response.status_code == 400


def test_pbkdf2_hash_is_upgraded_to_argon2_on_login(api, user):
    user.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    user.save()

    response = api.post(URL, {"email": user.email, "password": PASSWORD}, format="json")

    assert response.status_code == 200
    user.refresh_from_db()
    assert user.password.startswith("argon2")


def test_login_401_names_the_bearer_scheme_like_me_does(api, user):
    response = api.post(URL, {"email": user.email, "password": "nope-nope-nope"}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == api.get("/api/v1/auth/me/")["WWW-Authenticate"]
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("password", [1234567890123, 12.5, True, ["x"], {"a": 1}])
def test_a_password_that_is_not_a_string_is_a_400_field_error(api, user, password):
    response = api.post(URL, {"email": "ada@example.com", "password": password}, format="json")

    assert response.status_code == 400
    assert "password" in response.json()


@pytest.mark.parametrize("email", ["ada@example.com\u200b", "ada@exa\u2060mple.com"])
def test_login_refuses_an_email_with_an_invisible_character_like_any_malformed_one(
    api, user, email
):
    def attempt(address):
        return api.post(URL, {"email": address, "password": PASSWORD}, format="json")

    lookalike = attempt(email)
    unknown = attempt(email.replace("ada", "who"))

    assert lookalike.status_code == unknown.status_code == 400
    assert lookalike.content == unknown.content == attempt("not-an-email").content
    assert lookalike.json() == {"email": ["Enter a valid email address."]}


def test_an_account_made_before_look_alike_domains_were_refused_still_signs_in(api, make_user):
    # Registering "ada@exa\u0301mple.com" (a decomposed accent) is refused now, not signing in
    make_user(email="ada@exa\u0301mple.com")

    body = {"email": "ada@exa\u0301mple.com", "password": PASSWORD}
    response = api.post(URL, body, format="json")

    assert response.status_code == 200


def test_a_password_with_spaces_at_either_end_signs_in_as_registered(api):
    # Given an account whose passphrase starts and ends with a space
    password = " spaces around my passphrase "
    body = {"full_name": "Ada Lovelace", "email": "ada@example.com", "password": password}
    assert api.post("/api/v1/auth/register/", body, format="json").status_code == 201

    # When its owner signs in with it exactly as set, and without the spaces
    exact = api.post(URL, {"email": "ada@example.com", "password": password}, format="json")
    trimmed = api.post(
        URL, {"email": "ada@example.com", "password": password.strip()}, format="json"
    )

    # Then the spaces are part of the password
    assert exact.status_code == 200
    assert trimmed.status_code == 401
