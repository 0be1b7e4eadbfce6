"""Headers that make browsers and proxies treat the service's responses safely."""

import re

import pytest

pytestmark = pytest.mark.django_db

SCRIPT_TAG = re.compile(r"<script(?P<attrs>[^>]*)>(?P<body>.*?)</script>", re.S)


def directives(policy: str) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


def test_json_responses_carry_a_csp_that_allows_nothing(client):
    response = client.post("/api/v1/auth/login/", {}, content_type="application/json")

    policy = directives(response["Content-Security-Policy"])
    assert policy["default-src"] == "default-src 'none'"
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "strict-origin"


def test_api_responses_are_not_cached(user, client):
    response = client.post(
        "/api/v1/auth/login/",
        {"email": user.email, "password": "correct horse battery staple"},
        content_type="application/json",
    )

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_run_only_scripts_served_by_the_service(client, path):
    response = client.get(path)

    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == "script-src 'self'"
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    html = response.content.decode()
    scripts = list(SCRIPT_TAG.finditer(html))
    assert scripts
    for script in scripts:
        assert "src=" in script["attrs"], script.group(0)
        assert not script["body"].strip(), script.group(0)
    assert "googleapis" not in html
    assert "https://" not in html


def test_swagger_ui_start_up_script_is_served_as_javascript(client):
    response = client.get("/api/docs/?script=")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in response.content.decode()


def test_admin_pages_send_the_origin_as_referrer_for_their_csrf_check(client):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert response["Referrer-Policy"] == "strict-origin"


def test_reset_page_keeps_its_own_stricter_policy(client):
    response = client.get("/reset-password/?token=abc")

    policy = directives(response["Content-Security-Policy"])
    assert "script-src" not in policy
    assert policy["default-src"] == "default-src 'none'"
    assert response["Referrer-Policy"] == "no-referrer"


def test_https_responses_carry_one_year_hsts(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000

    response = client.get("/healthz", secure=True)

    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_plain_http_behind_the_proxy_is_redirected_but_health_checks_are_not(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    plain = client.get("/api/v1/auth/me/")
    proxied_https = client.get("/api/v1/auth/me/", HTTP_X_FORWARDED_PROTO="https")
    health = client.get("/healthz")

    assert plain.status_code == 308
    assert plain["Location"] == "https://testserver/api/v1/auth/me/"
    assert proxied_https.status_code == 401
    assert health.status_code == 200


def test_an_api_post_over_plain_http_is_sent_to_https_with_its_method_kept(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = client.post("/api/v1/auth/login/?next=1", data="{}", content_type="application/json")

    # 308, not 301: a client following it repeats the POST and its body
    assert response.status_code == 308
    assert response["Location"] == "https://testserver/api/v1/auth/login/?next=1"
    assert response.json() == {
        "detail": "The API is served over HTTPS only: https://testserver/api/v1/auth/login/?next=1",
        "code": "https_required",
    }
    assert response["Cache-Control"] == "no-store"


def test_pages_over_plain_http_keep_the_browsers_301(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = client.get("/reset-password/")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/reset-password/"


def test_a_reset_links_redirect_to_https_is_not_kept_by_browsers(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = client.get("/reset-password/", {"token": "a1" * 32})

    assert response.status_code == 301
    assert response["Location"] == f"https://testserver/reset-password/?token={'a1' * 32}"
    # Browsers keep a 301 indefinitely: the token would stay in their cache
    assert response["Cache-Control"] == "no-store"


def test_a_forwarded_host_header_cannot_redirect_clients_elsewhere(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = client.get("/api/v1/auth/me/", HTTP_X_FORWARDED_HOST="evil.example")

    assert response["Location"] == "https://testserver/api/v1/auth/me/"


BASELINE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [
        ("/api/v1/auth/me/", {}, 308),  # plain HTTP: the API's JSON redirect
        ("/admin/login/", {}, 301),  # plain HTTP: a page's redirect
        ("/healthz", {}, 200),
        ("/readyz", {}, 200),
        ("/static/probe.css", {"HTTP_X_FORWARDED_PROTO": "https"}, 200),
        ("/api/v1/auth/me", {"HTTP_X_FORWARDED_PROTO": "https"}, 308),  # no trailing slash
        ("/api/v1/auth/me/", {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "evil.example"}, 400),
    ],
)
def test_responses_answered_before_the_views_carry_the_security_headers(
    client, settings, tmp_path, path, extra, status
):
    settings.SECURE_SSL_REDIRECT = True
    settings.STATIC_ROOT = tmp_path  # a collected file, as the image has them
    (tmp_path / "probe.css").write_text("body {}")

    response = client.get(path, **extra)

    assert response.status_code == status
    for name, value in BASELINE.items():
        assert response[name] == value, name
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_a_referrer_policy_given_as_a_list_is_sent_as_one_header_value(client, settings):
    # Django's setting takes a list too (a fallback for old browsers first).
    settings.SECURE_REFERRER_POLICY = ["no-referrer", "strict-origin"]
    settings.SECURE_SSL_REDIRECT = True

    api = client.get("/api/v1/auth/me/")  # plain HTTP: answered before Django's middleware
    page = client.get("/healthz", HTTP_X_FORWARDED_PROTO="https")

    assert api.status_code == 308
    assert api["Referrer-Policy"] == page["Referrer-Policy"] == "no-referrer,strict-origin"
