"""Browser front ends on other origins: the API opens to the origins configured, and only those."""

import pytest

pytestmark = pytest.mark.django_db

FRONT_END = "https://app.example.com"
ME = "/api/v1/auth/me/"
LOGIN = "/api/v1/auth/login/"


def preflight(client, path, origin=FRONT_END, method="GET"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


def cors_headers(response) -> dict:
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


@pytest.fixture
def front_end(settings):
    settings.CORS_ALLOWED_ORIGINS = [FRONT_END]


def test_with_no_origin_configured_the_api_answers_as_it_always_has(client, settings):
    settings.CORS_ALLOWED_ORIGINS = []  # the default

    answer = preflight(client, ME)
    me = client.get(ME, HTTP_ORIGIN=FRONT_END)

    assert answer.status_code == me.status_code == 401
    assert cors_headers(answer) == cors_headers(me) == {}
    assert "origin" not in me.get("Vary", "").lower()


@pytest.mark.usefixtures("front_end")
@pytest.mark.parametrize(("path", "method"), [(ME, "GET"), (LOGIN, "POST")])
def test_a_configured_origin_may_send_json_and_a_bearer_token(client, path, method):
    answer = preflight(client, path, method=method)

    # No Content: a script never reads a preflight's answer, and it is no HTML page
    assert answer.status_code == 204
    assert answer.content == b""
    assert "Content-Type" not in answer
    assert "Content-Length" not in answer  # RFC 9110 8.6: none on a 204
    headers = cors_headers(answer)
    assert headers["access-control-allow-origin"] == FRONT_END
    assert method in headers["access-control-allow-methods"].split(", ")
    allowed = headers["access-control-allow-headers"].split(", ")
    assert {"authorization", "content-type", "x-request-id"} <= set(allowed)
    assert {"traceparent", "tracestate", "baggage"} <= set(allowed)  # a traced front end's
    assert int(headers["access-control-max-age"]) > 0
    # Bearer tokens, not cookies: a script's requests carry no credentials of the browser's.
    assert "access-control-allow-credentials" not in headers


@pytest.mark.usefixtures("front_end")
def test_a_front_end_can_read_an_error_and_the_headers_that_go_with_it(client, settings, user):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "login_email": "1/minute"}
    body = {"email": user.email, "password": "not-the-password"}

    refused = client.post(LOGIN, body, content_type="application/json", HTTP_ORIGIN=FRONT_END)
    throttled = client.post(LOGIN, body, content_type="application/json", HTTP_ORIGIN=FRONT_END)

    assert (refused.status_code, throttled.status_code) == (401, 429)
    for response in (refused, throttled):
        assert response["Access-Control-Allow-Origin"] == FRONT_END
        exposed = response["Access-Control-Expose-Headers"].split(", ")
        assert {"Retry-After", "WWW-Authenticate", "X-Request-ID"} <= set(exposed)
        assert "origin" in response["Vary"].lower()  # a shared cache keeps answers apart
    assert throttled["Retry-After"]


@pytest.mark.usefixtures("front_end")
@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://app.example.com", "null", "http://[::1"]
)
def test_any_other_origin_gets_no_cors_headers_and_its_preflight_no_shortcut(client, origin):
    answer = preflight(client, ME, origin=origin)
    me = client.get(ME, HTTP_ORIGIN=origin)

    assert cors_headers(answer) == cors_headers(me) == {}
    assert answer.status_code == 401  # the stack's own answer to an OPTIONS without a token
    assert answer.json()["code"] == "not_authenticated"


@pytest.mark.usefixtures("front_end")
@pytest.mark.parametrize(
    "path",
    ["/reset-password/", "/admin/login/", "/admin/", "/api/docs/", "/healthz", "/nowhere/"],
)
@pytest.mark.parametrize("origin", [FRONT_END, "https://evil.example"])
def test_a_preflight_outside_the_api_gets_no_cors_headers_and_no_html(client, path, origin):
    answer = preflight(client, path, origin=origin)

    assert cors_headers(answer) == {}
    if answer.content:
        assert answer["Content-Type"] == "application/json"
    else:  # the admin's sign-in redirect, or Django's own answer to OPTIONS
        assert "Content-Type" not in answer


@pytest.mark.usefixtures("front_end")
def test_a_preflight_for_a_host_the_service_does_not_serve_is_the_usual_400(client):
    answer = client.options(
        ME,
        HTTP_HOST="evil.example",
        HTTP_ORIGIN=FRONT_END,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )

    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_request"
    assert cors_headers(answer) == {}


@pytest.mark.usefixtures("front_end")
def test_a_preflight_over_plain_http_gets_the_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    answer = preflight(client, ME)

    assert answer.status_code == 308
    assert answer["Location"].startswith("https://")


@pytest.mark.usefixtures("front_end")
@pytest.mark.parametrize(
    "path", ["/reset-password/", "/admin/login/", "/api/schema/", "/api/docs/", "/healthz"]
)
def test_only_the_api_is_open_to_other_origins(client, path):
    response = client.get(path, HTTP_ORIGIN=FRONT_END)

    assert cors_headers(response) == {}
