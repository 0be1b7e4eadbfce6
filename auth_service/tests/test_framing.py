"""Every answer says how long its body is, whichever middleware made it, and an answer without
a body claims no type. Through the real gunicorn (where a missing length meant a chunked
body): tests/faults/test_http_framing.py."""

import pytest
from django.http import StreamingHttpResponse
from django.test import RequestFactory

from auth_service.framing import ResponseFramingMiddleware

pytestmark = pytest.mark.django_db

ME = "/api/v1/auth/me/"
STATIC_FILE = "/static/admin/css/base.css"
PREFLIGHT = {"HTTP_ORIGIN": "https://app.example.com", "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "GET"}


def over_plain_http(client, settings, path):
    settings.SECURE_SSL_REDIRECT = True  # read as the client's middleware loads
    return client.get(path)


# Answers made before CommonMiddleware, which sets the length of the others.
EARLY_ANSWERS = {
    "the API's HTTPS redirect": (lambda c, s: over_plain_http(c, s, ME), 308),
    "a page's HTTPS redirect": (lambda c, s: over_plain_http(c, s, "/reset-password/?t=1"), 301),
    "a Host the service does not serve": (lambda c, s: c.get(ME, HTTP_HOST="evil.example"), 400),
    "a preflight from such a Host": (
        lambda c, s: c.options(ME, HTTP_HOST="evil.example", **PREFLIGHT),
        400,
    ),
    "a static file's 405": (lambda c, s: c.post(STATIC_FILE), 405),
    "a static file's 416": (lambda c, s: c.get(STATIC_FILE, HTTP_RANGE="bytes=99999999-"), 416),
}


@pytest.fixture
def early(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    settings.WHITENOISE_USE_FINDERS = True  # the app's own files: no collectstatic in tests


@pytest.mark.usefixtures("early")
@pytest.mark.parametrize("case", EARLY_ANSWERS)
def test_an_answer_made_before_the_common_middleware_has_its_length(client, settings, case):
    request, status = EARLY_ANSWERS[case]

    response = request(client, settings)

    assert response.status_code == status
    assert response["Content-Length"] == str(len(response.content))


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("options", "/admin/login/", 200), ("get", "/admin/", 302), ("head", "/admin/", 302)],
)
def test_an_answer_without_a_body_claims_no_type(client, method, path, status):
    response = getattr(client, method)(path)

    assert response.status_code == status
    assert (response.content, response["Content-Length"]) == (b"", "0")
    assert "Content-Type" not in response


def test_a_body_keeps_its_type_and_length(client):
    response = client.get("/admin/login/")

    assert response["Content-Type"].startswith("text/html")
    assert response["Content-Length"] == str(len(response.content))


def test_a_streamed_body_stays_streamed():
    produced = []

    def body():
        for part in (b"first", b"second"):
            produced.append(part)
            yield part

    framing = ResponseFramingMiddleware(lambda request: StreamingHttpResponse(body()))

    response = framing(RequestFactory().get("/"))

    assert response.streaming
    assert "Content-Length" not in response
    assert produced == []  # nothing read ahead of sending
    assert b"".join(response.streaming_content) == b"firstsecond"


def test_a_no_content_answer_claims_no_length(auth_api, pair):
    response = auth_api.post("/api/v1/auth/logout/", {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 204
    # RFC 9110 8.6: a 204 carries no Content-Length (CommonMiddleware would give it "0").
    assert "Content-Length" not in response
    assert "Content-Type" not in response
