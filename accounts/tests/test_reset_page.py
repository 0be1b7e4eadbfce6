"""The reset page a person opens from the email."""

import re
from unittest import mock

import pytest
from django.core import mail
from django.db import connection
from django.test import Client

from accounts import reset_tokens, services
from accounts.pages import UNAVAILABLE
from auth_service.exceptions import HashingBusy

PAGE = "/reset-password/"
NEW_PASSWORD = "a-brand-new-passphrase"

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(user):
    return reset_tokens.token_issue(user=user).token


def submit(client, token, password=NEW_PASSWORD, confirm=None):
    return client.post(
        PAGE,
        {"token": token, "password": password, "password_confirm": confirm or password},
    )


def test_opening_the_link_shows_a_form_and_does_not_use_the_token(client, token):
    for _ in range(3):  # mail scanners prefetch links
        response = client.get(PAGE, {"token": token})
        assert response.status_code == 200

    html = response.content.decode()
    assert '<form method="post"' in html
    assert f'value="{token}"' in html
    assert 'autocomplete="new-password"' in html
    assert reset_tokens.token_peek(token=token) is not None


def test_a_link_checker_head_request_is_200_and_does_not_use_the_token(client, token):
    response = client.head(PAGE, {"token": token})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert response["Referrer-Policy"] == "no-referrer"
    assert reset_tokens.token_peek(token=token) is not None


def expire(token):
    """The token's ten minutes are up: Redis drops its keys."""
    token_digest = reset_tokens.digest(token)
    redis = reset_tokens._redis()
    redis.delete(reset_tokens._token_key(token_digest), reset_tokens._bind_key(token_digest))


@pytest.mark.parametrize("how", ["used", "expired", "unknown"])
def test_opening_a_link_that_no_longer_works_says_so_before_any_typing(client, token, how):
    if how == "used":
        assert submit(client, token).status_code == 200
    elif how == "expired":
        expire(token)
    else:
        token = "0" * 64

    response = client.get(PAGE, {"token": token})

    assert response.status_code == 200
    html = response.content.decode()
    warning = html.index('<div class="error" role="alert"><p>This link is invalid, expired or')
    assert warning < html.index('<form method="post"')
    assert "Ask for a new one in the app" in html
    assert response["Referrer-Policy"] == "no-referrer"


def test_opening_a_live_link_shows_no_warning(client, token):
    html = client.get(PAGE, {"token": token}).content.decode()

    assert '<form method="post"' in html
    assert 'role="alert"' not in html


@pytest.mark.usefixtures("eager_tasks")
def test_a_link_replaced_by_a_newer_one_says_so(client, api, user):
    for _ in range(2):
        api.post("/api/v1/auth/password/forgot/", {"email": user.email}, format="json")
    first, second = (re.search(r"token=([0-9a-f]{64})", m.body).group(1) for m in mail.outbox)

    assert "Ask for a new one" in client.get(PAGE, {"token": first}).content.decode()
    assert "Ask for a new one" not in client.get(PAGE, {"token": second}).content.decode()


@pytest.mark.parametrize("method", ["put", "delete", "options", "patch"])
def test_another_method_is_a_json_405_naming_the_allowed_ones(client, method):
    response = getattr(client, method)("/reset-password/")

    assert response.status_code == 405
    assert response.json() == {
        "detail": f'Method "{method.upper()}" not allowed.',
        "code": "method_not_allowed",
    }
    assert response["Allow"] == "GET, HEAD, POST"


def test_page_keeps_the_token_from_leaking(client, token):
    response = client.get(PAGE, {"token": token})

    # No Referer at all from this page, not even the origin (the contract's no-referrer).
    assert response["Referrer-Policy"] == "no-referrer"
    assert '<meta name="referrer" content="no-referrer">' in response.content.decode()
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "external asset on the page"
    assert "<script" not in html


def test_submitting_the_form_resets_the_password(client, token, user):
    response = submit(client, token)

    assert response.status_code == 200
    assert "Password changed" in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_mismatched_passwords_are_reported_and_keep_the_token(client, token):
    response = submit(client, token, confirm="something-else-entirely")

    assert response.status_code == 400
    assert "The two passwords do not match." in response.content.decode()
    assert reset_tokens.token_peek(token=token) is not None


def test_weak_password_is_reported_and_keeps_the_token(client, token):
    response = submit(client, token, password="password123")

    assert response.status_code == 400
    assert "This password is too common." in response.content.decode()
    assert reset_tokens.token_peek(token=token) is not None


def test_used_or_unknown_token_shows_a_clear_error(client, token):
    submit(client, token)

    response = submit(client, token)

    assert response.status_code == 400
    assert "invalid, expired or already used" in response.content.decode()


@pytest.mark.parametrize("mangled", ["a" * 3000, "0" * 32 + "\x00" + "0" * 31])
def test_a_mangled_token_shows_the_invalid_link_error(client, mangled):
    response = submit(client, mangled)

    assert response.status_code == 400
    assert "invalid, expired or already used" in response.content.decode()


@pytest.mark.parametrize("mangled", [" ", "\n"])
def test_a_blank_token_shows_the_invalid_link_error_too(client, mangled):
    # Opening such a link warns that it is dead; its form must not then fail without a word.
    assert "this form cannot set" in client.get(PAGE, {"token": mangled}).content.decode()

    response = submit(client, mangled)

    assert response.status_code == 400
    assert "invalid, expired or already used" in response.content.decode()


@pytest.mark.parametrize("padded", ["{} ", " {}", "{}\n"])
def test_a_token_with_whitespace_around_it_is_judged_as_sent_like_the_api_does(
    client, api, token, user, padded
):
    # Opening the link says this form cannot set a password with it: so it must not.
    assert (
        "this form cannot set" in client.get(PAGE, {"token": padded.format(token)}).content.decode()
    )

    response = submit(client, padded.format(token))

    assert response.status_code == 400
    assert "invalid, expired or already used" in response.content.decode()
    user.refresh_from_db()
    assert not user.check_password(NEW_PASSWORD)
    api_body = {"token": padded.format(token), "password": NEW_PASSWORD}
    assert api.post("/api/v1/auth/password/reset/", api_body, format="json").status_code == 400


def test_a_link_without_the_trailing_slash_redirects_and_no_browser_keeps_it(client, token):
    response = client.get("/reset-password", {"token": token})

    assert response.status_code == 301
    assert response["Location"] == f"/reset-password/?token={token}"
    assert response["Cache-Control"] == "no-store"
    assert reset_tokens.token_peek(token=token) is not None


def test_page_without_a_token_explains_what_to_do(client):
    response = client.get(PAGE)

    assert response.status_code == 200
    assert "Reset link incomplete" in response.content.decode()


@pytest.mark.usefixtures("eager_tasks")
def test_the_emailed_link_opens_the_page(client, api, user):
    api.post("/api/v1/auth/password/forgot/", {"email": user.email}, format="json")
    link = re.search(r"http://testserver(\S+)", mail.outbox[0].body).group(1)

    response = client.get(link)

    assert response.status_code == 200
    assert "Choose a new password" in response.content.decode()


def test_the_page_sets_no_cookie_and_its_form_carries_no_csrf_token(client, token):
    response = client.get(PAGE, {"token": token})

    assert not response.cookies
    assert "csrfmiddlewaretoken" not in response.content.decode()


def test_a_browser_post_under_no_referrer_resets_the_password(token, user):
    # What a browser sends from this page: `Origin: null`, no Referer, no cookie.
    browser = Client(enforce_csrf_checks=True)

    response = browser.post(
        PAGE,
        {"token": token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        HTTP_ORIGIN="null",
        secure=True,
    )

    assert response.status_code == 200
    assert "Password changed" in response.content.decode()
    assert response["Referrer-Policy"] == "no-referrer"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_ORIGIN": "null"},
        {"HTTP_SEC_FETCH_SITE": "same-site"},
        {"HTTP_ORIGIN": "https://evil.example", "HTTP_REFERER": "https://evil.example/reset"},
    ],
)
def test_a_post_another_sites_page_sends_is_refused_and_spends_no_budget(
    token, user, settings, headers
):
    # Any page could otherwise make its visitors' browsers spend their network's reset budget
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "reset_ip": "1/hour"}
    browser = Client(enforce_csrf_checks=True)
    body = {"token": token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}

    refused = [browser.post(PAGE, body, secure=True, **headers) for _ in range(2)]

    assert [response.status_code for response in refused] == [403, 403]
    assert "can only be sent from its own page" in refused[0].content.decode()
    assert refused[0]["Referrer-Policy"] == "no-referrer"
    assert reset_tokens.token_peek(token=token) is not None
    # The person's own submit still works: nothing was counted
    own = browser.post(PAGE, body, secure=True, HTTP_SEC_FETCH_SITE="same-origin")
    assert own.status_code == 200
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_a_second_submit_of_a_form_that_worked_says_the_password_may_be_set(client, token):
    assert submit(client, token).status_code == 200

    again = submit(client, token)

    assert again.status_code == 400
    assert "your new password may already be set" in again.content.decode()


def test_error_and_throttled_pages_send_no_referrer_too(client, settings, token):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "reset_ip": "1/hour"}

    invalid = submit(client, "not-a-token")
    throttled = submit(client, token)

    for response, status in ((invalid, 400), (throttled, 429)):
        assert response.status_code == status
        assert response["Referrer-Policy"] == "no-referrer"
        assert '<meta name="referrer" content="no-referrer">' in response.content.decode()


@pytest.fixture
def database_down(transactional_db):
    """PostgreSQL is unreachable: the connection points at a closed port until the test ends.
    Tests that use it outside their signature must ask for transactional_db themselves."""
    settings_dict = connection.settings_dict
    port = settings_dict["PORT"]
    connection.close()
    settings_dict["PORT"] = 1
    yield
    connection.close()
    settings_dict["PORT"] = port


@pytest.mark.parametrize("outage", ["redis_down", "database_down"])
def test_a_dependency_outage_shows_the_form_again_with_a_clear_message(
    transactional_db, request, client, token, outage
):
    request.getfixturevalue(outage)

    response = submit(client, token)

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert UNAVAILABLE in html
    assert '<form method="post"' in html
    assert f'value="{token}"' in html
    assert response["Referrer-Policy"] == "no-referrer"


def test_a_dependency_outage_changes_nothing(client, token, user, redis_down):
    submit(client, token)

    user.refresh_from_db()
    assert not user.check_password(NEW_PASSWORD)


@pytest.mark.parametrize("outage", ["redis_down", "database_down"])
def test_opening_the_link_does_not_need_redis_or_the_database(
    transactional_db, request, client, token, outage
):
    request.getfixturevalue(outage)

    response = client.get(PAGE, {"token": token})

    assert response.status_code == 200
    assert f'value="{token}"' in response.content.decode()


def test_while_redis_is_down_the_page_waits_for_it_once_and_says_so_once(
    client, token, redis_down, caplog
):
    with mock.patch.object(services, "reset_link_alive", wraps=services.reset_link_alive) as asked:
        pages = [client.get(PAGE, {"token": token}) for _ in range(3)]

    assert [page.status_code for page in pages] == [200, 200, 200]
    assert all(f'value="{token}"' in page.content.decode() for page in pages)
    assert asked.call_count == 1  # the next openings show the form without waiting on Redis
    warnings = [r for r in caplog.records if "dead links are told only" in r.getMessage()]
    assert [r.levelname for r in warnings] == ["WARNING"]


def test_a_reset_refused_while_hashing_is_busy_says_so_and_logs_a_warning(client, user, caplog):
    token = reset_tokens.token_issue(user=user).token
    caplog.set_level("INFO")

    with mock.patch("accounts.hashers.hash_run", side_effect=HashingBusy()):
        response = client.post(
            PAGE, {"token": token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
        )

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert "The service is busy. Try again in a second." in response.content.decode()
    assert [(r.levelname, r.name) for r in caplog.records if r.levelno >= 30] == [
        ("WARNING", "auth_service.exceptions")
    ]


@pytest.fixture
def browser():
    """The reset page's visitor, its client's middleware loaded (which waits for the hash
    threads to start: it must, before hashing_full holds them)."""
    visitor = Client()
    visitor.get("/healthz")
    return visitor


def test_a_reset_the_busy_service_turned_away_spends_none_of_the_budget(
    settings, user, token, browser, hashing_full
):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "reset_ip": "2/hour"}

    refused = [submit(browser, token).status_code for _ in range(3)]
    hashing_full()

    assert refused == [503, 503, 503]
    assert submit(browser, token).status_code == 200
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
