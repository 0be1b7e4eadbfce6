"""Client mistakes get the contract's JSON error shape, never HTML and never a 500."""

import gzip
import json

import pytest
from django.core.exceptions import PermissionDenied
from django.db import (
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
)
from django.test import Client
from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser

from accounts.managers import UserManager
from auth_service.exceptions import HashingBusy, json_exception_handler
from conftest import PASSWORD

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register/"


def test_malformed_json_is_400_parse_error(client):
    response = client.post(REGISTER, data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_json_that_is_not_an_object_is_400(client):
    response = client.post(REGISTER, data="[1, 2, 3]", content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"


def test_form_encoded_body_is_415(client):
    response = client.post(REGISTER, data={"email": "a@example.com"})

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "gzip, identity"])
def test_a_compressed_body_is_415_saying_to_send_it_uncompressed(client, coding):
    body = gzip.compress(b'{"email": "a@example.com"}')

    response = client.post(
        REGISTER, data=body, content_type="application/json", headers={"content-encoding": coding}
    )

    assert response.status_code == 415
    assert response.json() == {
        "detail": f"Content-Encoding {coding!r} is not supported: send the body uncompressed.",
        "code": "unsupported_media_type",
    }


@pytest.mark.parametrize("coding", ["identity", "Identity", ""])
def test_an_identity_content_encoding_is_a_plain_body(client, coding):
    response = client.post(
        "/api/v1/auth/login/",
        data='{"email": "nobody@example.com", "password": "a-long-passphrase"}',
        content_type="application/json",
        headers={"content-encoding": coding},
    )

    assert response.status_code == 401


def test_a_number_with_thousands_of_digits_is_a_plain_parse_error(client):
    response = client.post(
        REGISTER, data='{"password": ' + "9" * 4301 + "}", content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "JSON parse error - a number has too many digits.",
        "code": "parse_error",
    }


def test_oversized_body_is_413_json(client):
    body = '{"email": "' + "a" * 100_000 + '"}'

    response = client.post(REGISTER, data=body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body is too large.",
        "code": "payload_too_large",
    }


def test_wrong_method_is_405_json(client):
    response = client.get(REGISTER)

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/api/v1/auth/nope/", "/api/v2/", "/nothing-here"])
def test_unknown_paths_are_404_json(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response.content == b'{"detail":"Not found.","code":"not_found"}'


def test_a_host_not_allowed_is_400_compact_json(client, settings):
    settings.ALLOWED_HOSTS = ["auth.example.com"]

    response = client.get("/api/v1/auth/me/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response.content == b'{"detail":"Bad request.","code":"bad_request"}'


def test_invalid_utf8_is_400(client):
    response = client.post(REGISTER, data=b'{"email": "\xff"}', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/auth/login/?format=xml"),
        ("get", "/api/v1/auth/me/?format=xml"),
        ("get", "/api/schema/?format=xml"),
        ("get", "/api/schema/?format=csv"),
    ],
)
def test_an_unknown_format_is_404_json_not_a_500(client, method, path):
    response = getattr(client, method)(path, content_type="application/json")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_the_schema_still_answers_format_json(client):
    response = client.get("/api/schema/?format=json")

    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


@pytest.mark.parametrize("version", ["a%0Ab", "2.0 (beta)"])
def test_a_version_in_the_schema_query_is_ignored_not_a_500(client, version):
    response = client.get(f"/api/schema/?format=json&version={version}")

    assert response.status_code == 200
    assert response.json()["info"]["version"] == "1.0.0"
    assert response["Content-Disposition"] == 'inline; filename="auth_service API.json"'


def test_errors_from_the_schema_view_are_json_not_yaml(client):
    response = client.post("/api/schema/")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_django_permission_denied_in_a_view_is_403_json():
    response = json_exception_handler(PermissionDenied("internal reason"), {})

    assert response.status_code == 403
    assert response.data == {
        "detail": "You do not have permission to perform this action.",
        "code": "permission_denied",
    }


def test_a_database_connection_closed_under_a_request_is_503_json(caplog):
    response = json_exception_handler(InterfaceError("connection already closed"), {})

    assert response.status_code == 503
    assert response.data["code"] == "service_unavailable"
    assert "dependency unavailable: database (InterfaceError)" in caplog.text
    assert "connection already closed" not in caplog.text


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", [REGISTER, "/api/v1/auth/login/", "/api/v1/auth/password/forgot/"])
@pytest.mark.parametrize("depth", [1_000, 32_000])  # 2 KB, and the most 64 KiB can hold
def test_deeply_nested_json_is_400_parse_error(client, path, depth):
    response = client.post(path, data=nested(depth), content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_deeply_nested_json_is_400_under_a_raised_body_limit(client, settings):
    # Operators may raise DATA_UPLOAD_MAX_MEMORY_SIZE; depth must not become a 500 then either.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    body = '{"a": ' * 100_000 + "1" + "}" * 100_000

    for data in (nested(100_000), body):
        response = client.post(REGISTER, data=data, content_type="application/json")

        assert response.status_code == 400
        assert response.json()["code"] == "parse_error"


def test_an_api_path_without_its_slash_is_a_308_that_says_so(client):
    response = client.post("/api/v1/auth/login?next=1", {}, content_type="application/json")

    assert response.status_code == 308
    assert response["Location"] == "/api/v1/auth/login/?next=1"
    assert response.json() == {
        "detail": "This endpoint's URL ends with a slash: /api/v1/auth/login/",
        "code": "trailing_slash_required",
    }


@pytest.mark.parametrize("debug", [False, True])
def test_following_the_308_repeats_the_post_with_its_body(client, make_user, settings, debug):
    # Django's own 301 (and, under DEBUG, its RuntimeError) would lose the POST.
    settings.DEBUG = debug
    make_user(email="ada@example.com")

    response = client.post(
        "/api/v1/auth/login",
        {"email": "ada@example.com", "password": PASSWORD},
        content_type="application/json",
        follow=True,
    )

    assert response.redirect_chain == [("/api/v1/auth/login/", 308)]
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_an_unknown_api_path_without_a_slash_is_still_404(client):
    response = client.get("/api/v1/auth/nope")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["/admin", "/reset-password"])
def test_pages_outside_the_api_keep_djangos_301(client, path):
    response = client.get(path)

    assert response.status_code == 301
    assert response["Location"] == f"{path}/"


LONE_SURROGATE = "\\ud800"  # valid JSON escape syntax, but half of a UTF-16 pair: not text


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        (REGISTER, {"full_name": "Ada", "email": "ada@example.com", "password": PASSWORD}),
        ("/api/v1/auth/login/", {"email": "ada@example.com", "password": PASSWORD}),
        ("/api/v1/auth/token/refresh/", {"refresh": "x"}),
        ("/api/v1/auth/logout/", {"refresh": "x"}),
        ("/api/v1/auth/password/change/", {"current_password": PASSWORD, "new_password": "x"}),
        ("/api/v1/auth/password/forgot/", {"email": "ada@example.com"}),
        ("/api/v1/auth/password/reset/", {"token": "x", "password": PASSWORD}),
    ],
)
def test_a_lone_surrogate_in_any_field_is_400_parse_error(client, pair, path, fields):
    # Email throttles, hashing, PostgreSQL and Redis all need text that encodes as UTF-8.
    auth = {"HTTP_AUTHORIZATION": f"Bearer {pair['access']}"}
    for field in fields:
        body = ", ".join(
            f'"{name}": "{value}{LONE_SURROGATE if name == field else ""}"'
            for name, value in fields.items()
        )
        response = client.post(path, data="{" + body + "}", content_type="application/json", **auth)

        assert response.status_code == 400, (field, response.content)
        assert response.json() == {
            "detail": "JSON parse error - a \\u escape holds half of a UTF-16 surrogate pair.",
            "code": "parse_error",
        }


def test_a_surrogate_pair_is_text_and_still_accepted(client):
    # "\ud83d\udcb8" is one emoji, written as the pair JSON requires outside the BMP.
    body = '{"full_name": "Ada \\ud83d\\udcb8", "email": "ada@example.com", "password": "%s"}'

    response = client.post(REGISTER, data=body % PASSWORD, content_type="application/json")

    assert response.status_code == 201
    assert response.json()["full_name"] == "Ada \U0001f4b8"


def post_labelled(client, path: str, body: bytes, content_type: str):
    """Post these exact bytes under this Content-Type (the test client would re-encode a body
    into the charset the type names)."""
    return client.post(path, data=body, content_type="application/json", CONTENT_TYPE=content_type)


@pytest.mark.parametrize("charset", ["latin-1", "iso-8859-1", "cp1252", "utf-16"])
def test_a_charset_parameter_does_not_change_how_json_is_read(client, charset):
    # RFC 8259: JSON is UTF-8 and a charset parameter has no effect. Read by it, a client that
    # mislabels its UTF-8 body would store "ZoÃ«" and a password no other client signs in with.
    password = "pässwörd-Sicher-42"
    body = {"full_name": "Zoë", "email": "zoe@example.com", "password": password}
    credentials = {"email": "zoe@example.com", "password": password}

    registered = post_labelled(
        client,
        REGISTER,
        json.dumps(body, ensure_ascii=False).encode(),
        f"application/json; charset={charset}",
    )
    login = post_labelled(
        client,
        "/api/v1/auth/login/",
        json.dumps(credentials, ensure_ascii=False).encode(),
        "application/json",
    )

    assert registered.status_code == 201
    assert registered.json()["full_name"] == "Zoë"
    assert login.status_code == 200


def test_a_body_that_is_not_utf8_is_400_whatever_its_charset_says(client):
    body = '{"email": "ada@bücher.example"}'.encode("latin-1")

    response = post_labelled(
        client, "/api/v1/auth/password/forgot/", body, "application/json; charset=latin-1"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize(
    "error", [IntegrityError("duplicate key"), DataError("value too long"), ProgrammingError("no")]
)
def test_a_database_error_that_is_a_bug_is_a_500_not_an_outage(caplog, error):
    # Left to Django's JSON 500 handler: a 503 would send operators looking at a healthy database.
    assert json_exception_handler(error, {}) is None
    assert "dependency unavailable" not in caplog.text


@pytest.mark.parametrize(
    "error", [OperationalError("server closed the connection"), InternalError("read-only")]
)
def test_a_database_that_fails_is_503_json(caplog, error):
    response = json_exception_handler(error, {})

    assert response.status_code == 503
    assert response.data["code"] == "service_unavailable"
    assert f"dependency unavailable: database ({type(error).__name__})" in caplog.text


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.ConnectionError("refused"),
        redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
        redis_errors.ReadOnlyError("You can't write against a read only replica."),
        redis_errors.MasterDownError("Link with MASTER is down"),
        # As redis-py makes them from the server's replies
        *(
            BaseParser.parse_error(reply)
            for reply in (
                "MISCONF Redis is configured to save RDB snapshots, but it's currently unable",
                "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN",
                "NOREPLICAS Not enough good replicas to write.",
                "CLUSTERDOWN The cluster is down",
                "TRYAGAIN Multiple keys request during rehashing of slot",
                "LOADING Redis is loading the dataset in memory",
            )
        ),
    ],
)
def test_a_redis_that_cannot_serve_is_503_json(caplog, error):
    response = json_exception_handler(error, {})

    assert response.status_code == 503
    assert response.data["code"] == "service_unavailable"
    assert f"dependency unavailable: redis ({type(error).__name__})" in caplog.text


@pytest.mark.parametrize(
    "error",
    [
        BaseParser.parse_error("WRONGTYPE Operation against a key holding the wrong value"),
        BaseParser.parse_error("ERR unknown command 'GETDEL'"),
        BaseParser.parse_error("BUSYKEY Target key name already exists."),
    ],
)
def test_a_redis_reply_that_is_a_bug_is_a_500_not_an_outage(caplog, error):
    # Redis is up and said the request itself was wrong: a 503 would hide the bug.
    assert json_exception_handler(error, {}) is None
    assert "dependency unavailable" not in caplog.text


def admin_sign_in_failing_with(monkeypatch, error: Exception):
    """The admin's sign-in, whose user lookup (outside DRF) raises this error."""

    def lookup(*args, **kwargs):
        raise error

    monkeypatch.setattr(UserManager, "_one", lookup)
    client = Client(raise_request_exception=False)
    return client.post("/admin/login/", {"username": "root@example.com", "password": "x"})


def test_the_admin_sign_in_with_the_database_unreachable_is_503_json(monkeypatch, caplog):
    error = OperationalError("connection to server failed")

    response = admin_sign_in_failing_with(monkeypatch, error)

    assert response.status_code == 503
    assert response.json() == {
        "detail": "The service is temporarily unavailable. Try again shortly.",
        "code": "service_unavailable",
    }
    assert "dependency unavailable: database (OperationalError)" in caplog.text
    # Named once; the driver's message and a traceback stay out of the log
    assert "connection to server failed" not in caplog.text
    assert "Traceback" not in caplog.text


def test_a_login_burst_during_an_admin_sign_in_is_a_503_with_retry_after(monkeypatch, caplog):
    response = admin_sign_in_failing_with(monkeypatch, HashingBusy())

    assert response.status_code == 503
    assert response.json() == {
        "detail": "The service is busy. Try again in a second.",
        "code": "service_unavailable",
    }
    assert response["Retry-After"] == "1"
    assert [r.levelname for r in caplog.records if r.levelno >= 30] == ["WARNING"]
    assert "Traceback" not in caplog.text


def test_an_unexpected_error_outside_the_api_is_still_a_500(monkeypatch):
    response = admin_sign_in_failing_with(monkeypatch, RuntimeError("a bug"))

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error.", "code": "server_error"}


def test_a_form_post_failing_the_csrf_check_is_a_json_403():
    client = Client(enforce_csrf_checks=True)

    response = client.post("/admin/login/", {"username": "root@example.com", "password": "x"})

    assert response.status_code == 403
    assert response.json() == {"detail": "Permission denied.", "code": "permission_denied"}


class ResetMidBody:
    """A request body whose connection the client resets before it is whole (an app killed, a
    network switched): reading it fails as gunicorn's reader does then."""

    def read(self, size=-1):
        raise ConnectionResetError(104, "Connection reset by peer")

    readline = read


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/auth/login/", "application/json"),
        (REGISTER, "application/json"),
        ("/reset-password/?token=abc", "application/x-www-form-urlencoded"),
    ],
    ids=["login", "register", "reset page"],
)
def test_a_client_that_resets_its_connection_mid_body_is_a_400_not_a_500(
    path, content_type, caplog
):
    client = Client(raise_request_exception=False)

    response = client.post(
        path,
        headers={"sec-fetch-site": "same-origin"},
        CONTENT_TYPE=content_type,
        CONTENT_LENGTH="100",
        **{"wsgi.input": ResetMidBody()},
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The request body could not be read in full.",
        "code": "bad_request",
    }
    # The client's network failed, not the service: no error, no traceback to alert on.
    assert [r.levelname for r in caplog.records if r.levelno >= 30] == ["WARNING"]
    assert "Traceback" not in caplog.text
