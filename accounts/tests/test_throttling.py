"""Login, registration, password change and reset rate limits: what an attacker, and an honest
user next to one, sees."""

import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest
from django.core import mail
from django.db import OperationalError
from django.test import Client
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from accounts import hashers, reset_tokens, throttling
from accounts.managers import UserManager
from accounts.models import User
from auth_service import counters
from auth_service.exceptions import HashingBusy
from conftest import PASSWORD, cut_off_redis

LOGIN = "/api/v1/auth/login/"
FORGOT = "/api/v1/auth/password/forgot/"
RESET = "/api/v1/auth/password/reset/"
CHANGE = "/api/v1/auth/password/change/"
REGISTER = "/api/v1/auth/register/"
RATES = {
    "login_ip": "1000/min",
    "login_email": "5/min",
    "reset_ip": "20/hour",
    "password_change": "5/min",
    "register_ip": "1000/hour",
}

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rates(settings):
    settings.THROTTLE_RATES = {**RATES, "reset_email": "5/hour"}
    return settings.THROTTLE_RATES


WRONG = "wrong-password-here"


def attempt(api, email, password=WRONG, **extra):
    return api.post(LOGIN, {"email": email, "password": password}, format="json", **extra)


def test_sixth_login_for_one_email_in_a_minute_is_429_with_retry_after(api, user):
    statuses = [
        attempt(api, email).status_code for email in ["ada@example.com", "ADA@example.com"] * 3
    ]

    assert statuses == [401] * 5 + [429]
    response = attempt(api, "ada@example.com", PASSWORD)
    assert response.status_code == 429
    assert response.json() == {
        "detail": response.json()["detail"],
        "code": "throttled",
    }
    assert response.json()["detail"].startswith("Request was throttled.")
    assert response["Content-Type"] == "application/json"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_unknown_emails_are_limited_like_known_ones(api):
    statuses = [attempt(api, "nobody@example.com").status_code for _ in range(6)]

    assert statuses == [401] * 5 + [429]


def test_email_limit_does_not_block_other_emails(api, user):
    for _ in range(6):
        attempt(api, "eve@example.com")

    assert attempt(api, user.email, PASSWORD).status_code == 200


def test_login_limit_per_ip_blocks_one_address_and_spares_others(api, rates, user):
    rates["login_ip"] = "3/min"
    statuses = [attempt(api, f"guess{n}@example.com").status_code for n in range(4)]

    assert statuses == [401, 401, 401, 429]
    assert attempt(api, user.email, PASSWORD, REMOTE_ADDR="203.0.113.9").status_code == 200


def test_when_both_login_limits_refuse_retry_after_is_the_longer_wait(api, rates):
    rates["login_ip"] = "3/min"
    rates["login_email"] = "2/hour"

    statuses = [
        attempt(api, email).status_code
        for email in ["eve@example.com"] * 2 + ["mallory@example.com"]
    ]

    assert statuses == [401, 401, 401]
    response = attempt(api, "eve@example.com")
    assert response.status_code == 429
    assert 60 < int(response["Retry-After"]) <= 3600


def test_a_blocked_address_cannot_spend_a_victims_login_budget(api, rates, user):
    """Logins refused by the per-IP limit are not counted against the emails they name, so an
    attacker cannot lock someone out while its own address is blocked."""
    rates["login_ip"] = "3/min"
    for n in range(3):
        attempt(api, f"guess{n}@example.com")

    statuses = [attempt(api, user.email).status_code for _ in range(6)]

    assert statuses == [429] * 6
    assert attempt(api, user.email, PASSWORD, REMOTE_ADDR="203.0.113.9").status_code == 200


def test_a_forgot_refused_for_its_email_leaves_the_address_budget_alone(
    api, rates, user, eager_tasks
):
    rates["reset_ip"] = "7/hour"
    for _ in range(5):
        api.post(FORGOT, {"email": user.email}, format="json")

    refused = [api.post(FORGOT, {"email": user.email}, format="json") for _ in range(2)]

    assert [response.status_code for response in refused] == [429, 429]
    others = [api.post(FORGOT, {"email": f"n{n}@example.com"}, format="json") for n in range(3)]
    assert [response.status_code for response in others] == [202, 202, 429]


def test_forged_x_forwarded_for_does_not_escape_the_ip_limit(api, rates, settings):
    """Behind two proxies the client can only prepend entries; they are ignored."""
    rates["login_ip"] = "3/min"
    settings.TRUSTED_PROXY_COUNT = 2

    statuses = [
        attempt(
            api,
            f"guess{n}@example.com",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{n}, 198.51.100.7, 104.16.0.1",
        ).status_code
        for n in range(4)
    ]
    other_client = attempt(
        api, "guess@example.com", HTTP_X_FORWARDED_FOR="198.51.100.8, 104.16.0.1"
    )

    assert statuses == [401, 401, 401, 429]
    assert other_client.status_code == 401


def test_ipv6_clients_are_counted_per_64_block(api, rates):
    rates["login_ip"] = "2/min"

    statuses = [
        attempt(api, f"g{n}@example.com", REMOTE_ADDR=f"2001:db8:1:2::{n}").status_code
        for n in range(1, 4)
    ]

    assert statuses == [401, 401, 429]
    assert attempt(api, "g@example.com", REMOTE_ADDR="2001:db8:1:3::1").status_code == 401


def test_redis_keys_hold_neither_emails_nor_addresses(api):
    attempt(api, "Secret.Person@example.com", REMOTE_ADDR="198.51.100.23")

    keys = [key.decode() for key in get_redis_connection("default").keys("*")]
    assert any("throttle:login_email:" in key for key in keys)
    assert any("throttle:login_ip:" in key for key in keys)
    for key in keys:
        assert "example.com" not in key.lower()
        assert "198.51.100.23" not in key


def test_counter_is_atomic_under_concurrent_hits():
    """Concurrent hits never both take the last place: exactly the limit gets through."""

    def hit(_):
        return counters.rolling_hit(key="test:concurrency", limit=150, period=60)

    with ThreadPoolExecutor(max_workers=16) as pool:
        waits = list(pool.map(hit, range(400)))

    assert waits.count(0) == 150
    assert all(1 <= wait <= 60 for wait in waits if wait)


def test_counter_works_after_redis_forgot_its_scripts():
    """A restarted (or failed-over) Redis has no cached scripts; the counter loads it again."""
    counters.rolling_hit(key="test:scripts", limit=2, period=60)
    get_redis_connection("default").script_flush()

    assert counters.rolling_hit(key="test:scripts", limit=2, period=60) == 0
    assert counters.rolling_hit(key="test:scripts", limit=2, period=60) > 0


def test_counter_key_expires_with_its_window():
    counters.rolling_hit(key="test:expiry", limit=5, period=60)

    ttl = get_redis_connection("default").ttl(f"{counters.KEY_PREFIX}test:expiry")
    assert 0 < ttl <= 60


def test_limit_holds_across_what_would_be_a_window_edge():
    """A fixed window would let the limit through at the end of one window and again at the
    start of the next; a rolling one lets a hit in only as an earlier one ages out."""

    def hit():
        return counters.rolling_hit(key="test:edge", limit=3, period=2)

    assert hit() == 0
    time.sleep(1.5)
    assert [hit(), hit()] == [0, 0]
    assert hit() > 0
    time.sleep(0.8)  # the first hit is now more than 2 s old; the other two are not

    assert [hit() == 0, hit() == 0] == [True, False]


def test_refused_hits_do_not_prolong_the_wait():
    for _ in range(2):
        counters.rolling_hit(key="test:knock", limit=2, period=2)
    for _ in range(5):  # a client that keeps knocking
        assert counters.rolling_hit(key="test:knock", limit=2, period=2) > 0
        time.sleep(0.3)

    time.sleep(0.8)  # 2.3 s after the allowed hits, the only ones recorded
    assert counters.rolling_hit(key="test:knock", limit=2, period=2) == 0


def test_a_hit_one_limit_refuses_is_recorded_under_none():
    full = counters.Hit("test:full", 1, 60)
    other = counters.Hit("test:other", 5, 60)
    assert counters.rolling_hits([full]) == [0]

    waits = counters.rolling_hits([other, full])

    assert waits[0] == 0
    assert 1 <= waits[1] <= 60
    assert get_redis_connection("default").zcard(f"{counters.KEY_PREFIX}test:other") == 0
    assert counters.rolling_hits([other]) == [0]


def test_login_fails_open_when_redis_is_unreachable_and_logs_once(
    api, user, redis_down, caplog, monkeypatch
):
    # Retry Redis on every request, so every failure reaches the logger.
    monkeypatch.setattr(throttling.outage, "retry_after", 0.0)
    caplog.set_level(logging.ERROR, logger="accounts.throttling")

    responses = [attempt(api, user.email, PASSWORD) for _ in range(4)]

    assert [response.status_code for response in responses] == [200] * 4
    records = [r for r in caplog.records if r.name == "accounts.throttling"]
    assert len(records) == 1
    assert "Redis is unreachable" in records[0].getMessage()


def test_after_a_redis_failure_requests_skip_redis_for_a_while(api, user, redis_down, monkeypatch):
    calls = []
    real_hits = counters.rolling_hits

    def counted_hits(hits, member=None):
        calls.append(hits)
        return real_hits(hits, member)

    monkeypatch.setattr(counters, "rolling_hits", counted_hits)

    statuses = [attempt(api, user.email, PASSWORD).status_code for _ in range(3)]

    assert statuses == [200] * 3
    assert len(calls) == 1


@pytest.mark.usefixtures("eager_tasks")
def test_reset_emails_stay_limited_right_after_a_redis_failure(api, user, settings):
    # Redis fails one request (a login, let through unlimited) and answers again at once: a
    # restart, a failover, a stall past the socket timeout
    reachable = settings.CACHES
    cut_off_redis(settings)
    assert attempt(api, "someone@example.com").status_code == 401
    settings.CACHES = reachable

    statuses = [
        api.post(FORGOT, {"email": user.email}, format="json").status_code for _ in range(8)
    ]

    # Forgot needs Redis anyway: it never goes on unlimited, the way login does in an outage
    assert statuses == [202] * 5 + [429] * 3
    assert len(mail.outbox) == 5


def test_a_forgot_whose_limit_redis_cannot_count_is_503_and_sends_nothing(
    api, user, redis_down, eager_tasks
):
    responses = [api.post(FORGOT, {"email": user.email}, format="json") for _ in range(3)]

    assert {(r.status_code, r.json()["code"]) for r in responses} == {(503, "service_unavailable")}
    assert mail.outbox == []


def test_sixth_forgot_for_one_email_in_an_hour_is_429_known_or_not(api, user, eager_tasks):
    for email in (user.email, "nobody@example.com"):
        statuses = [
            api.post(FORGOT, {"email": email.upper()}, format="json").status_code for _ in range(6)
        ]

        assert statuses == [202] * 5 + [429]
    response = api.post(FORGOT, {"email": user.email}, format="json")
    assert response.json()["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 3600


def test_forgot_and_reset_share_one_budget_per_ip(api, rates, user, eager_tasks):
    rates["reset_ip"] = "3/hour"
    garbage = {"token": "x" * 43, "password": "a-brand-new-passphrase"}

    statuses = [
        api.post(FORGOT, {"email": "a@example.com"}, format="json").status_code,
        api.post(RESET, garbage, format="json").status_code,
        api.post(FORGOT, {"email": "b@example.com"}, format="json").status_code,
        api.post(RESET, garbage, format="json").status_code,
        api.post(FORGOT, {"email": "c@example.com"}, format="json").status_code,
    ]

    assert statuses == [202, 400, 202, 429, 429]
    other_ip = api.post(FORGOT, {"email": "d@example.com"}, format="json", REMOTE_ADDR="192.0.2.1")
    assert other_ip.status_code == 202


def test_reset_page_form_counts_in_the_same_per_ip_budget(api, client, rates):
    rates["reset_ip"] = "1/hour"
    body = {"token": "x" * 43, "password": "a-new-pass-1", "password_confirm": "a-new-pass-1"}

    api.post(RESET, {"token": "x" * 43, "password": "a-new-pass-1"}, format="json")
    response = client.post("/reset-password/", body)

    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert 1 <= int(response["Retry-After"]) <= 3600


@pytest.mark.parametrize(
    ("path", "scope"),
    [(LOGIN, "login_ip"), (RESET, "reset_ip"), (FORGOT, "reset_ip"), (REGISTER, "register_ip")],
)
@pytest.mark.parametrize("method", ["get", "head", "options", "put"])
def test_requests_with_a_method_the_endpoint_does_not_serve_spend_no_budget(
    api, rates, path, scope, method
):
    rates[scope] = "2/hour"

    statuses = {getattr(api, method)(path).status_code for _ in range(4)}

    assert statuses == ({200} if method == "options" else {405})
    assert get_redis_connection("default").keys(f"{counters.KEY_PREFIX}*") == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_bodies_the_endpoint_cannot_parse_spend_no_budget(api, rates, user, content_type):
    # What a page on another site can make a browser post, without a CORS preflight
    rates["reset_ip"] = "2/hour"

    statuses = [
        api.post(FORGOT, "email=ada@example.com", content_type=content_type).status_code
        for _ in range(3)
    ]

    assert statuses == [415] * 3
    assert api.post(FORGOT, {"email": user.email}, format="json").status_code == 202


@pytest.mark.parametrize(
    ("path", "scope"),
    [(LOGIN, "login_ip"), (RESET, "reset_ip"), (FORGOT, "reset_ip"), (REGISTER, "register_ip")],
)
@pytest.mark.parametrize("body", ["", '{"email": "ada@example.com"}'])
def test_posts_without_a_content_type_spend_no_budget(client, rates, path, scope, body):
    # fetch(url, {method: "POST", mode: "no-cors"}) from any page sends no Content-Type
    rates[scope] = "2/hour"

    statuses = {client.post(path, body, content_type="").status_code for _ in range(3)}

    # A body of no type is a 415; none at all lacks the fields
    assert statuses == ({415} if body else {400})
    assert get_redis_connection("default").keys(f"{counters.KEY_PREFIX}*") == []


@pytest.mark.parametrize(
    ("path", "scope"),
    [(LOGIN, "login_ip"), (RESET, "reset_ip"), (FORGOT, "reset_ip"), (REGISTER, "register_ip")],
)
def test_compressed_bodies_spend_no_budget(client, rates, path, scope):
    rates[scope] = "2/hour"
    body = '{"email": "ada@example.com"}'

    statuses = {
        client.post(
            path, body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
        ).status_code
        for _ in range(3)
    }

    assert statuses == {415}
    assert get_redis_connection("default").keys(f"{counters.KEY_PREFIX}*") == []


def register(api, email, **extra):
    body = {"full_name": "Eve Prober", "email": email, "password": PASSWORD}
    return api.post(REGISTER, body, format="json", **extra)


def test_registrations_from_one_address_are_limited_whatever_their_outcome(api, rates, user):
    # Each answer tells whether an email has an account: probing for them is what this limits.
    rates["register_ip"] = "3/hour"

    statuses = [
        register(api, email).status_code
        for email in [user.email, "new-one@example.com", "not-an-email", user.email]
    ]

    assert statuses == [400, 201, 400, 429]
    response = register(api, "latecomer@example.com")
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 3600
    assert not User.objects.filter(email="latecomer@example.com").exists()


def test_the_registration_limit_spares_other_addresses_and_other_endpoints(api, rates, user):
    rates["register_ip"] = "1/hour"
    register(api, "first@example.com")

    assert register(api, "second@example.com").status_code == 429
    assert register(api, "second@example.com", REMOTE_ADDR="203.0.113.9").status_code == 201
    assert attempt(api, user.email, PASSWORD).status_code == 200


def test_registrations_refused_while_hashing_is_full_spend_none_of_the_limit(
    api, rates, hashing_full
):
    rates["register_ip"] = "2/hour"

    refused = [register(api, f"busy{n}@example.com").status_code for n in range(3)]
    hashing_full()
    later = [register(api, f"calm{n}@example.com").status_code for n in range(3)]

    assert refused == [503, 503, 503]
    assert later == [201, 201, 429]


def test_logins_refused_while_hashing_is_full_leave_the_emails_budget(api, user, hashing_full):
    refused = [attempt(api, user.email).status_code for _ in range(6)]
    hashing_full()

    assert refused == [503] * 6
    assert attempt(api, user.email, PASSWORD).status_code == 200


@pytest.fixture
def staff(make_user):
    return make_user(email="root@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def admin():
    """A browser on the admin, its client's middleware loaded (which waits for the hash
    threads to start: it must, before hashing_full holds them)."""
    browser = Client(raise_request_exception=False)
    browser.get("/healthz")
    return browser


def test_admin_sign_ins_refused_while_hashing_is_full_leave_the_emails_budget(
    staff, admin, hashing_full
):

    def sign_in():
        body = {"username": "root@example.com", "password": PASSWORD}
        return admin.post("/admin/login/?next=/admin/", body)

    refused = [sign_in().status_code for _ in range(6)]
    hashing_full()

    assert refused == [503] * 6
    assert sign_in().status_code == 302  # signed in


def test_admin_password_changes_refused_while_hashing_is_full_leave_the_users_budget(
    staff, admin, hashing_full
):
    admin.force_login(staff)
    body = {
        "old_password": PASSWORD,
        "new_password1": "a-new-pass-4-root",
        "new_password2": "a-new-pass-4-root",
    }

    refused = [admin.post("/admin/password_change/", body).status_code for _ in range(6)]
    hashing_full()

    assert refused == [503] * 6
    assert admin.post("/admin/password_change/", body).status_code == 302  # changed


@pytest.fixture
def busy_after_one_hash(monkeypatch):
    """The pool lets each request's first hash in and is full by its second: a burst arriving
    while a password change checks the current password. Call the function it gives to end it."""
    real = hashers.hash_run
    calls = itertools.count()

    def run(function, *args):
        if next(calls) % 2:
            raise HashingBusy()
        return real(function, *args)

    monkeypatch.setattr(hashers, "hash_run", run)
    return lambda: monkeypatch.setattr(hashers, "hash_run", real)


NEW_PASSWORD = "a-new-pass-4-everyone"


def test_a_password_change_refused_busy_after_its_check_keeps_its_hit(
    auth_api, rates, busy_after_one_hash
):
    rates["password_change"] = "1/hour"
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    refused = auth_api.post(CHANGE, body, format="json")
    busy_after_one_hash()
    retry = auth_api.post(CHANGE, body, format="json")

    # The 503 said the current password was right (a wrong one is a 400): no free retry.
    assert refused.status_code == 503
    assert retry.status_code == 429


def test_an_admin_password_change_refused_busy_after_its_check_keeps_its_hit(
    staff, admin, rates, busy_after_one_hash
):
    rates["password_change"] = "1/hour"
    admin.force_login(staff)
    body = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD}
    body["new_password2"] = NEW_PASSWORD

    refused = admin.post("/admin/password_change/", body)
    busy_after_one_hash()
    retry = admin.post("/admin/password_change/", body)

    assert refused.status_code == 503
    assert retry.status_code == 429


def test_a_refund_redis_cannot_take_leaves_the_hit_to_age_out(rates, settings, caplog, rf):
    rates["login_ip"] = "1/min"
    request = rf.post(LOGIN)
    assert throttling.throttles_wait([throttling.LoginIPThrottle()], request) == 0
    reachable = settings.CACHES

    cut_off_redis(settings)
    throttling.refund_hits(request)  # Redis went away between the count and the refund
    settings.CACHES = reachable

    assert "throttle hits of a refused request not taken back" in caplog.text
    assert throttling.throttles_wait([throttling.LoginIPThrottle()], rf.post(LOGIN)) > 0


def test_registration_is_not_limited_when_redis_is_unreachable(api, rates, redis_down):
    rates["register_ip"] = "1/hour"

    statuses = [register(api, f"user{n}@example.com").status_code for n in range(3)]

    assert statuses == [201, 201, 201]


def test_the_admin_sign_in_shares_the_login_limit_per_email(api, client, make_user):
    make_user(email="root@example.com", is_staff=True, is_superuser=True)
    for _ in range(4):
        attempt(api, "root@example.com")

    def admin_sign_in(password):
        return client.post(
            "/admin/login/?next=/admin/", {"username": "ROOT@example.com", "password": password}
        )

    fifth, sixth = admin_sign_in(WRONG), admin_sign_in(PASSWORD)

    assert fifth.status_code == 200  # the form again, with Django's own error
    assert sixth.status_code == 429
    assert sixth.json() == {
        "detail": f"Too many sign-in attempts. Try again in {sixth['Retry-After']} seconds.",
        "code": "throttled",
    }
    assert 1 <= int(sixth["Retry-After"]) <= 60
    assert attempt(api, "root@example.com", PASSWORD).status_code == 429


def test_full_width_spellings_of_an_address_share_its_admin_sign_in_limit(client, make_user):
    # The admin's form folds them (NFKC) into the one address it signs in
    make_user(email="root@example.com", is_staff=True, is_superuser=True)
    spellings = [
        "root@example.com",
        "\uff52oot@example.com",
        "r\uff4fot@example.com",
        "ro\uff4ft@example.com",
        "roo\uff54@example.com",
        "root@\uff45xample.com",
    ]

    responses = [
        client.post("/admin/login/", {"username": spelling, "password": WRONG})
        for spelling in spellings
    ]

    assert [response.status_code for response in responses] == [200] * 5 + [429]


def padded(shift: int) -> str:
    """root@fintech.example, its domain typed with the "fi" ligature and padded with soft
    hyphens to 253 characters, the padding placed by `shift`. IDNA's mapping writes it
    fintech.example; NFKC would make the domain 254 characters long, and the username over the
    form's 254, which the form therefore does not normalise."""
    soft_hyphen, domain = "\u00ad", "\ufb01ntech.example"
    pad = 253 - len(domain)
    return f"root@{soft_hyphen * shift}{domain[:4]}{soft_hyphen * (pad - shift)}{domain[4:]}"


def test_padded_spellings_of_an_address_share_its_admin_sign_in_limit(client, make_user):
    make_user(email="root@fintech.example", is_staff=True, is_superuser=True)

    def sign_in(username, password=WRONG):
        return client.post("/admin/login/", {"username": username, "password": password})

    spent = [sign_in("root@fintech.example").status_code for _ in range(5)]
    guesses = [sign_in(padded(shift)).status_code for shift in range(1, 4)]
    right = sign_in(padded(4), PASSWORD)

    assert spent == [200] * 5
    assert guesses == [429] * 3
    assert right.status_code == 429  # not signed in past the limit


def test_the_admin_sign_in_still_signs_staff_in(client, make_user):
    make_user(email="root@example.com", is_staff=True, is_superuser=True)

    response = client.post(
        "/admin/login/?next=/admin/", {"username": "root@example.com", "password": PASSWORD}
    )

    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def change(api, access, current=WRONG):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    body = {"current_password": current, "new_password": "a-brand-new-passphrase"}
    return api.post(CHANGE, body, format="json")


def test_sixth_password_change_of_a_user_in_a_minute_is_429(api, user, make_user, login):
    access = login()["access"]
    statuses = [change(api, access).status_code for _ in range(5)]

    # Guessing the current password with a stolen session stops after five tries...
    assert statuses == [400] * 5
    refused = change(api, access, current=PASSWORD)
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60
    # ...and the right one, sent then, changed nothing
    login()
    # Another user's changes are not held back
    make_user(email="bob@example.com")
    other = login(email="bob@example.com")["access"]
    assert change(APIClient(), other, current=PASSWORD).status_code == 204


@pytest.mark.parametrize("path", [LOGIN, REGISTER, FORGOT, RESET, CHANGE])
def test_throttled_operations_document_429_with_retry_after(client, path):
    document = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    throttled = document["paths"][path]["post"]["responses"]["429"]
    assert throttled["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert throttled["headers"]["Retry-After"]["schema"]["type"] == "integer"


def test_the_admin_own_password_form_shares_the_password_change_limit(api, client, make_user):
    staff = make_user(email="root@example.com", is_staff=True, is_superuser=True)
    client.force_login(staff)

    def admin_change(current):
        body = {
            "old_password": current,
            "new_password1": "a-new-pass-4-root",
            "new_password2": "a-new-pass-4-root",
        }
        return client.post("/admin/password_change/", body)

    # Guessing the current password from a stolen staff session stops after five tries...
    statuses = [admin_change(WRONG).status_code for _ in range(5)]
    refused = admin_change(PASSWORD)

    assert statuses == [200] * 5  # the form again, "Your old password was entered incorrectly"
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60
    staff.refresh_from_db()
    assert staff.check_password(PASSWORD)  # ...and the right one, sent then, changed nothing
    # The API's change shares that budget
    pair = api.post(LOGIN, {"email": "root@example.com", "password": PASSWORD}, format="json")
    assert change(APIClient(), pair.json()["access"], current=PASSWORD).status_code == 429


@pytest.mark.parametrize("email", ["ada@example.com", "nobody@example.com"])
def test_forgots_turned_away_while_the_broker_is_down_spend_none_of_the_emails_limit(
    api, user, broker_down, redis_client, email
):
    # An app retrying through an outage of the email queue, more times than the email's limit
    during = [api.post(FORGOT, {"email": email}, format="json") for _ in range(7)]

    # Each 503 is the same, leaves no link, and spends none of the email's limit (the address's
    # counts them: see below)
    assert {(r.status_code, r.content) for r in during} == {(503, during[0].content)}
    assert redis_client.keys(f"{reset_tokens.PREFIX}*") == []
    (counted,) = redis_client.keys(f"{counters.KEY_PREFIX}*")
    assert b":reset_ip:" in counted
    # So once the queue is back, the email has its whole budget, and no more
    broker_down()
    after = [api.post(FORGOT, {"email": email}, format="json").status_code for _ in range(6)]
    assert after == [202] * 5 + [429]


def test_forgots_turned_away_while_the_broker_is_down_still_count_against_the_address(
    api, user, broker_down, rates
):
    # A client flooding forgot through an outage, each request waiting on the failing queue
    rates["reset_ip"] = "3/hour"

    statuses = [
        api.post(FORGOT, {"email": f"{n}@example.com"}, format="json").status_code for n in range(4)
    ]

    assert statuses == [503, 503, 503, 429]


def test_a_forgot_turned_away_in_an_outage_is_the_same_for_known_and_unknown_emails(
    api, user, broker_down
):
    known = api.post(FORGOT, {"email": user.email}, format="json")
    unknown = api.post(FORGOT, {"email": "nobody@example.com"}, format="json")

    assert (known.status_code, known.content) == (unknown.status_code, unknown.content)
    assert known.status_code == 503


@pytest.mark.parametrize("email", ["ada@example.com", "nobody@example.com"])
def test_forgots_turned_away_while_the_database_is_down_spend_none_of_the_emails_limit(
    api, user, monkeypatch, email
):
    lost = OperationalError("server closed the connection unexpectedly")
    monkeypatch.setattr(UserManager, "active_by_email", mock.Mock(side_effect=lost))

    during = [api.post(FORGOT, {"email": email}, format="json").status_code for _ in range(7)]
    monkeypatch.undo()  # the database is back
    after = [api.post(FORGOT, {"email": email}, format="json").status_code for _ in range(6)]

    assert during == [503] * 7
    assert after == [202] * 5 + [429]
