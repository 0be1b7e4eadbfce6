"""The WSGI application gunicorn serves, called as gunicorn calls it: chunked request bodies,
and HEAD answered without a body.

Not through Django's test client: that builds its requests itself and would skip what
auth_service/wsgi.py does to them. The real gunicorn: tests/faults/test_http_framing.py.
"""

import io
import json

import pytest
from django.core.signals import request_finished

from conftest import PASSWORD
from testing.wsgi import Answer, call, cut_short

LOGIN = "/api/v1/auth/login/"
TOO_LARGE = {"detail": "The request body is too large.", "code": "payload_too_large"}
CUT_SHORT = {"detail": "The request body could not be read in full.", "code": "bad_request"}


def post_chunked(path: str, body) -> Answer:
    """A POST whose body came chunked: gunicorn's environ has the body but no CONTENT_LENGTH."""
    stream = io.BytesIO(body) if isinstance(body, bytes) else body
    return call(
        "POST",
        path,
        CONTENT_TYPE="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": stream, "wsgi.input_terminated": True},
    )


class EndlessBody:
    """A chunked body that never ends, counting what was read of it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, size: int) -> bytes:
        assert size >= 0, "the whole of an endless body"
        self.read_bytes += size
        return b"a" * size


# Transactional: the application signals request_started and request_finished, which close the
# test's database connection, as for any request a server hands it.
@pytest.mark.django_db(transaction=True)
def test_a_chunked_login_with_the_right_credentials_gets_its_tokens(user):
    body = json.dumps({"email": user.email, "password": PASSWORD}).encode()

    answer = post_chunked(LOGIN, body)

    assert answer.status == 200, answer.body
    assert set(answer.json()) == {"access", "refresh"}


def test_a_chunked_body_over_the_limit_is_413_json_and_read_no_further(settings):
    body = EndlessBody()

    answer = post_chunked(LOGIN, body)

    assert answer.status == 413
    assert answer.json() == TOO_LARGE
    assert body.read_bytes == settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1


def test_a_chunked_body_may_be_as_long_as_the_limit_and_no_longer(settings):
    body = b'{"email": "ada@example.com"}'

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body)
    # The email arrived; only the password is missing
    assert post_chunked(LOGIN, body).json() == {"password": ["This field is required."]}

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body) - 1
    assert post_chunked(LOGIN, body).json() == TOO_LARGE


def post_cut_short(path: str, content_type: str, received: bytes, missing: int) -> Answer:
    """A POST whose body stopped `missing` bytes short of its Content-Length."""
    return call(
        "POST",
        path,
        CONTENT_TYPE=content_type,
        HTTP_SEC_FETCH_SITE="same-origin",
        **cut_short(received, missing),
    )


@pytest.mark.django_db(transaction=True)
def test_a_login_cut_short_of_its_length_is_refused_though_what_came_is_whole_json(user):
    body = json.dumps({"email": user.email, "password": PASSWORD}).encode()

    answer = post_cut_short(LOGIN, "application/json", body, missing=20)

    # Not served as the login it looks like: the client never finished sending it
    assert answer.status == 400
    assert answer.json() == CUT_SHORT


def test_a_reset_form_cut_short_of_its_length_is_refused_not_read_as_a_shorter_form():
    # The form parses as it stands: a token and a password missing the end it was typed with
    received = b"token=abc&password=correct-horse-battery&password_confirm=correct-horse-batt"

    answer = post_cut_short("/reset-password/", "application/x-www-form-urlencoded", received, 5)

    assert answer.status == 400
    assert answer.json() == CUT_SHORT


@pytest.mark.django_db(transaction=True)
def test_a_body_of_declared_length_that_arrives_whole_is_served(user):
    body = json.dumps({"email": user.email, "password": PASSWORD}).encode()

    answer = post_cut_short(LOGIN, "application/json", body, missing=0)

    assert answer.status == 200, answer.body
    assert set(answer.json()) == {"access", "refresh"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"token=x&password="),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n',
        ),
    ],
    ids=["urlencoded", "multipart"],
)
def test_no_form_sees_part_of_a_chunked_body_over_the_limit(settings, content_type, body):
    # Given a form body that would parse without its end
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body += b"x" * 2048

    answer = call(
        "POST",
        "/reset-password/",
        CONTENT_TYPE=content_type,
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )

    # Then the page refuses it as it refuses any body over the limit, parsing none of it
    assert answer.status == 413
    assert answer.json() == TOO_LARGE


class CountingBody(io.BytesIO):
    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


@pytest.mark.parametrize("path", ["/reset-password/", "/admin/login/"])
def test_a_file_in_a_form_over_the_limit_is_refused_unread(settings, tmp_path, path):
    # Given a multipart form whose file part alone is over the limit (Django counts only the
    # fields against it, and would stream the file to disk)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    body = CountingBody(
        b'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\nx\r\n'
        b'--b\r\nContent-Disposition: form-data; name="f"; filename="f.bin"\r\n\r\n'
        + b"x" * 4_000_000
        + b"\r\n--b--\r\n"
    )

    answer = call(
        "POST",
        path,
        CONTENT_TYPE="multipart/form-data; boundary=b",
        CONTENT_LENGTH=str(len(body.getvalue())),
        HTTP_COOKIE="csrftoken=" + "a" * 32,
        **{"wsgi.input": body},
    )

    assert answer.status == 413
    assert answer.json() == TOO_LARGE
    assert body.read_bytes == 0
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def finished_requests():
    """How many requests Django saw through to their end (request_finished)."""
    count = []

    def receiver(**kwargs):
        count.append(1)

    request_finished.connect(receiver)
    yield count
    request_finished.disconnect(receiver)


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/auth/me/", "/api/v1/auth/login"])
def test_head_gets_the_headers_of_get_and_no_body(path, finished_requests):
    got = call("GET", path)

    answer = call("HEAD", path)

    assert got.body
    assert answer.body == b""
    assert answer.status == got.status
    assert answer.headers["Content-Length"] == got.headers["Content-Length"] == str(len(got.body))
    # The request ended as one whose body was sent: its resources are released
    assert len(finished_requests) == 2
