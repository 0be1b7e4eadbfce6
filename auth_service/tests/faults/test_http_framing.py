"""How request and response bodies are framed, through the real gunicorn (shared with the fault
tests): chunked request bodies."""

import json

import requests

LIMIT = 64 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE


def chunked(body: bytes, size: int = 4096):
    """The body as a generator: requests then sends it with Transfer-Encoding: chunked."""
    return (body[start : start + size] for start in range(0, len(body), size))


def post_chunked(web, path: str, body: bytes) -> requests.Response:
    return requests.post(
        web.url(path),
        data=chunked(body),
        headers={"Content-Type": "application/json"},
        timeout=15,
    )


def test_a_chunked_login_with_the_right_credentials_gets_its_tokens(web, api, account):
    body = json.dumps({"email": account.email, "password": account.password}).encode()

    response = post_chunked(web, "/api/v1/auth/login/", body)

    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"access", "refresh"}


def test_a_chunked_body_over_the_limit_is_413_json(web, api):
    # Over the limit by less than gunicorn drains after a response, so the connection closes
    # cleanly and the client reads the whole answer.
    body = b'{"email": "' + b"a" * (LIMIT + 30_000) + b'"}'

    response = post_chunked(web, "/api/v1/auth/register/", body)

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body is too large.",
        "code": "payload_too_large",
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_a_chunked_body_at_the_limit_is_read_whole(web, api):
    body = b'{"email": "' + b"a" * (LIMIT - 13) + b'"}'
    assert len(body) == LIMIT

    response = post_chunked(web, "/api/v1/auth/register/", body)

    # The email arrived (too long to be one), where an empty body would lack it
    assert response.status_code == 400
    assert response.json()["email"] != ["This field is required."]
