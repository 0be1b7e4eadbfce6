"""Production log lines are JSON a log search can read, and carry no secrets."""

import json
import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.http.errors import NoMoreData

from auth_service.access_log import AccessLogger, QueryRedactingFilter
from auth_service.logging import MESSAGE_MAX, JsonFormatter


def record(name="accounts", msg="user registered", args=(), **extra) -> logging.LogRecord:
    entry = logging.makeLogRecord({"name": name, "msg": msg, "args": args, "levelname": "INFO"})
    entry.__dict__.update(extra)
    return entry


def test_a_log_call_becomes_one_json_line_with_its_plain_extras():
    line = JsonFormatter().format(record(msg="sent %s", args=("mail",), user_id=7))

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "accounts"
    assert entry["message"] == "sent mail"
    assert entry["user_id"] == 7


def test_the_request_attached_by_django_is_not_written():
    class Request:
        def __repr__(self):
            return "<WSGIRequest: GET '/reset-password/?token=s3cr3t'>"

    line = JsonFormatter().format(record(name="django.request", request=Request()))

    assert "s3cr3t" not in line


def test_access_lines_keep_the_path_but_not_the_query_or_headers():
    atoms = {
        "m": "GET",
        "U": "/reset-password/",
        "q": "token=s3cr3t",
        "s": "200",
        "M": 3,
        "h": "10.0.0.1",
        "{authorization}i": "Bearer eyJ.s3cr3t",
    }
    access = record(name="gunicorn.access", msg="%(m)s %(U)s?%(q)s", args=())
    access.args = atoms

    entry = json.loads(JsonFormatter().format(access))

    assert "s3cr3t" not in json.dumps(entry)
    assert entry["path"] == "/reset-password/"
    assert entry["status"] == 200
    assert entry["message"] == "GET /reset-password/ 200"


def test_gunicorn_error_lines_lose_the_query_of_the_request_they_quote():
    failed = record(
        name="gunicorn.error",
        msg="Error handling request %s %s",
        args=("GET", "/reset-password/?token=s3cr3t&next=/x"),
    )
    refused = record(
        name="gunicorn.error",
        msg="Invalid HTTP request line: 'GET /reset-password/?token=s3cr3t\\xc3 HTTP/1.1'",
    )
    quoted = record(
        name="gunicorn.error",
        msg='Invalid HTTP request line: "GET /reset-password/?token=AB\'s3cr3t\\x7f HTTP/1.1"',
    )

    for entry in (failed, refused, quoted):
        assert QueryRedactingFilter().filter(entry)
        line = JsonFormatter().format(entry)
        assert "s3cr3t" not in line
        assert "/reset-password/?..." in line


@pytest.mark.parametrize(
    "error",
    [
        # No Content-Length (or one too short): the rest of the body is read as a request line.
        """Invalid HTTP request line: '{"email":"ada@example.com","password":"s3cr3t-pw"}'""",
        # "Transfer-Encoding: chunked" over a plain body: the body is read as a chunk size.
        """Invalid chunk size: b'{"email":"ada@example.com","password":"s3cr3t-pw"}'""",
        # A header line without its colon is quoted whole, value included.
        "Invalid HTTP Header: 'Authorization Bearer eyJhbGciOiJIUzI1NiJ9.s3cr3t.sig'",
        # A token broken over two lines: the second line alone, the signature.
        "Invalid HTTP Header: 's3cr3tSIGNATUREs3cr3tSIGNATUREs3cr3tSIGNATUR'",
    ],
    ids=["body as request line", "body as chunk size", "header without colon", "line break"],
)
def test_gunicorn_refusals_do_not_quote_a_body_or_header_value(error):
    refused = record(name="gunicorn.error", msg=f"Invalid request from ip=10.0.0.1: {error}")

    assert QueryRedactingFilter().filter(refused)
    line = JsonFormatter().format(refused)

    assert "s3cr3t" not in line
    assert "ada@example.com" not in line
    assert "Invalid request from ip=10.0.0.1: Invalid " in line


@pytest.mark.parametrize(
    "read",
    [
        # Broken off in its headers: what followed the request line, Authorization included.
        b"Host: 127.0.0.1\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.s3cr3t.sig\r\n",
        # A body without Content-Length, read as the next request's line.
        b'{"email":"ada@example.com","password":"s3cr3t-pw"}',
        # Such a body that is one word (a code, a password), which a refusal would keep as a
        # name it got wrong: here it is only what the client sent.
        b"s3cr3t-Tr0ub4dor-pw",
    ],
    ids=["headers", "body as request line", "one-word body"],
)
def test_a_request_the_client_broke_off_is_logged_without_what_it_sent(read):
    # gunicorn's debug line for a connection closed before its request was whole
    broken_off = record(
        name="gunicorn.error",
        msg="Ignored premature client disconnection. %s",
        args=(NoMoreData(read),),
    )

    assert QueryRedactingFilter().filter(broken_off)
    line = JsonFormatter().format(broken_off)

    assert "s3cr3t" not in line
    assert "ada@example.com" not in line
    withheld = f"<{len(repr(read)) - 3} characters withheld>"
    assert f"Ignored premature client disconnection. No more data after: {withheld}" in line


def test_a_request_line_the_client_broke_off_after_is_logged_without_its_query():
    broken_off = record(
        name="gunicorn.error",
        msg="Ignored premature client disconnection. %s",
        args=(NoMoreData(b"GET /reset-password/?token=s3cr3t HTTP/1.1"),),
    )

    assert QueryRedactingFilter().filter(broken_off)
    line = JsonFormatter().format(broken_off)

    assert "s3cr3t" not in line
    assert "No more data after: b'GET /reset-password/?..." in line


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        (
            "Invalid HTTP request line: 'GET /reset-password/?token=s3cr3t\\xc3 HTTP/1.1'",
            "'GET /reset-password/?... HTTP/1.1'",
        ),
        ("Invalid HTTP Header: 'CONTENT-LENGTH'", "'CONTENT-LENGTH'"),
        ("Invalid HTTP method: 'get'", "'get'"),
        ("Invalid HTTP Version: 'HTTP/2.0'", "'HTTP/2.0'"),
        ("Unsupported transfer coding: 'foo'", "'foo'"),
        # gunicorn's own words where it would otherwise quote the client's
        ("Invalid HTTP Header: 'bare LF as line terminator'", "'bare LF as line terminator'"),
        (
            "Invalid HTTP request line: 'bare LF as line terminator'",
            "'bare LF as line terminator'",
        ),
        (
            "Invalid chunk size: b'line over 4096 bytes with no terminator'",
            "b'line over 4096 bytes with no terminator'",
        ),
        ("Invalid chunk terminator is not '\\r\\n': b'{\"'", "not '\\r\\n': <2 characters"),
    ],
)
def test_gunicorn_refusals_still_name_what_they_refused(error, kept):
    refused = record(name="gunicorn.error", msg=f"Invalid request from ip=10.0.0.1: {error}")

    assert QueryRedactingFilter().filter(refused)

    assert kept in refused.getMessage()
    assert "s3cr3t" not in refused.getMessage()


def test_a_request_for_a_host_not_served_is_one_warning_without_a_traceback(client, caplog):
    with caplog.at_level(logging.INFO, logger="django.security.DisallowedHost"):
        response = client.get("/api/v1/auth/me/", HTTP_HOST="scanner.example")

    assert response.status_code == 400
    (record,) = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert record.levelname == "WARNING"
    assert record.exc_info is None


def test_a_long_message_is_cut_to_a_line_log_collectors_keep_whole():
    line = JsonFormatter().format(record(msg="quoted: %s", args=("h" * 20_000,)))

    entry = json.loads(line)
    assert len(line) < 16_384  # Docker splits longer lines into pieces that are not JSON
    assert entry["message"].startswith("quoted: hhh")
    assert entry["message"].endswith(f"… ({8 + 20_000 - MESSAGE_MAX} more characters)")


def test_a_huge_host_header_is_logged_on_one_whole_line(client, caplog):
    host = "h" * 8_150 + ".example"  # gunicorn takes a header line of up to 8,190 bytes
    with caplog.at_level(logging.INFO, logger="django.security.DisallowedHost"):
        response = client.get("/api/v1/auth/me/", HTTP_HOST=host)

    assert response.status_code == 400
    (record,) = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    line = JsonFormatter().format(record)
    assert len(line) < 16_384
    assert json.loads(line)["message"].startswith("Invalid HTTP_HOST header: 'hhh")


def test_a_malformed_form_is_logged_as_one_line_without_a_traceback(client, caplog):
    body = b'--b\r\nContent-Disposition: form-data; name="password"\r\n\r\nx\r\n'
    with caplog.at_level(logging.INFO):
        response = client.generic(
            "POST",
            "/reset-password/",
            body,
            content_type="multipart/form-data",  # no boundary
            HTTP_SEC_FETCH_SITE="same-origin",
        )

    assert response.status_code == 400
    logged = [r for r in caplog.records if r.name == "django.request"]
    assert [r.levelname for r in logged] == ["WARNING"]
    # Anyone could fill the log with tracebacks of a parser refusing their body.
    assert logged[0].exc_info is None


@pytest.mark.parametrize(
    "body",
    [
        {"token": "a" * 70_000},  # over DATA_UPLOAD_MAX_MEMORY_SIZE
        {f"field{n}": "x" for n in range(1_200)},  # over DATA_UPLOAD_MAX_NUMBER_FIELDS
    ],
    ids=["too big", "too many fields"],
)
def test_an_oversized_form_is_a_client_error_logged_as_one_warning(client, caplog, body):
    with caplog.at_level(logging.INFO):
        response = client.post("/reset-password/", body)

    assert response.status_code in (400, 413)
    assert response["Content-Type"] == "application/json"
    serious = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert serious
    assert {r.levelname for r in serious} == {"WARNING"}
    assert all(r.exc_info is None for r in serious)


def test_access_lines_name_the_client_behind_the_proxies_as_the_rate_limits_do(settings):
    # Render: Cloudflare's edge and Render's proxy each append the address they were reached from
    settings.TRUSTED_PROXY_COUNT = 2
    environ = {
        "REMOTE_ADDR": "10.201.3.4",  # Render's proxy, the same for every client
        "HTTP_X_FORWARDED_FOR": "198.51.100.66, 203.0.113.7, 104.22.17.40",  # a forged first
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/auth/me/",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    response = SimpleNamespace(status="200 OK", headers=[], sent=0)

    atoms = AccessLogger.atoms(None, response, None, environ, timedelta(milliseconds=3))

    assert atoms["h"] == "203.0.113.7"


def test_an_access_line_without_the_services_settings_names_the_socket_and_fails_nothing(settings):
    # Another app served under this configuration (the benchmark's plain Django reference)
    del settings.TRUSTED_PROXY_COUNT
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    response = SimpleNamespace(status="200 OK", headers=[], sent=0)

    atoms = AccessLogger.atoms(None, response, None, environ, timedelta(milliseconds=3))

    assert atoms["h"] == "127.0.0.1"


def test_a_request_gunicorn_refused_after_its_request_line_is_logged_with_its_path():
    # A malformed header (here Content-Length: x): gunicorn logs the access line from the
    # parsed request line, with an environ that has no PATH_INFO.
    request = SimpleNamespace(method="POST", path="/api/v1/auth/login/", query="next=/x")
    environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "POST", "SERVER_PROTOCOL": "HTTP/1.1"}
    response = SimpleNamespace(status="400 Bad Request", headers=[], sent=0)
    atoms = AccessLogger.atoms(None, response, request, environ, timedelta(milliseconds=0))
    access = record(name="gunicorn.access", msg="%(m)s %(U)s", args=())
    access.args = atoms

    entry = json.loads(JsonFormatter().format(access))

    assert entry["path"] == "/api/v1/auth/login/"
    assert entry["message"] == "POST /api/v1/auth/login/ 400"
