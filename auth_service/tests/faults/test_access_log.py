"""Access lines of the real gunicorn (shared with the fault tests): JSON, no secrets."""

import socket

import pytest
import requests

from auth_service.tests.faults.harness import WebServer, json_lines, wait_for


def access_lines(output: str) -> list[dict]:
    return [line for line in json_lines(output) if line.get("logger") == "gunicorn.access"]


def test_access_lines_name_the_request_but_never_its_token_or_credentials(web, api, account):
    seen = len(web.output())
    credentials = {"email": account.email, "password": account.password}

    statuses = [
        api.get("/api/v1/auth/me/", token=account.access).status_code,
        api.get("/reset-password/?token=s3cr3t-reset-token").status_code,
        api.post("/api/v1/auth/login/", credentials).status_code,
    ]

    assert statuses == [200, 200, 200]
    expected = {
        ("GET", "/api/v1/auth/me/", 200),
        ("GET", "/reset-password/", 200),
        ("POST", "/api/v1/auth/login/", 200),
    }
    # A worker writes the access line just after it sent the response.
    wait_for(
        lambda: (
            {
                (line["method"], line["path"], line["status"])
                for line in access_lines(web.output()[seen:])
            }
            >= expected
        ),
        timeout=5,
        what="the three access lines",
    )
    output = web.output()[seen:]
    assert account.access not in output
    assert "s3cr3t-reset-token" not in output
    assert account.password not in output
    for line in access_lines(output):
        assert line["remote_addr"] == "127.0.0.1"
        assert isinstance(line["duration_ms"], int)


def test_a_refused_request_line_is_logged_without_its_query(web):
    seen = len(web.output())
    # A raw non-ASCII byte in the URL: gunicorn refuses the line and logs it as a warning.
    line = (
        b"GET /reset-password/?token=s3cr3t-reset-token\xc3\xa9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as conn:
        conn.sendall(line)
        status = conn.recv(64)

    assert status.startswith(b"HTTP/1.1 400")
    wait_for(lambda: "Invalid request" in web.output()[seen:], timeout=5, what="the refusal logged")
    output = web.output()[seen:]
    assert "s3cr3t-reset-token" not in output
    assert "/reset-password/?..." in output


def test_a_body_sent_without_its_framing_is_not_quoted_in_the_log(web):
    seen = len(web.output())
    body = b'{"email":"ada@example.com","password":"s3cr3t-password"}\r\n'
    unframed = [
        # "chunked" over a plain body: gunicorn reads the body as a chunk size.
        b"POST /api/v1/auth/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
        # No Content-Length: the body is read as the next request's line.
        b"POST /api/v1/auth/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n\r\n" + body,
    ]
    for request in unframed:
        with socket.create_connection(("127.0.0.1", web.port), timeout=5) as conn:
            conn.sendall(request)
            conn.recv(4096)

    wait_for(
        lambda: web.output()[seen:].count("Invalid request") >= 2,
        timeout=5,
        what="both refusals logged",
    )
    output = web.output()[seen:]
    assert "s3cr3t-password" not in output
    assert "ada@example.com" not in output


@pytest.fixture
def debug_web(service_env, tmp_path):
    """gunicorn at --log-level debug, as in local development: DEBUG=true, for the production
    logging configuration holds gunicorn's log at INFO whatever the command line says."""
    env = {**service_env, "DEBUG": "true"}
    server = WebServer(env=env, log=tmp_path / "gunicorn.log", workers=1)
    server.args += ["--log-level", "debug"]
    server.start()
    yield server
    server.stop()


def test_a_request_the_client_broke_off_is_not_quoted_in_the_debug_log(debug_web):
    login = b"POST /api/v1/auth/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    body = b'{"email":"ada@example.com","password":"s3cr3t-password"}'
    broken_off = [
        # Closed in its headers, after its token
        b"GET /api/v1/auth/me/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.s3cr3t-token.sig\r\n",
        # No Content-Length: the body is read as the next request's line, which never ends.
        login + b"Content-Type: application/json\r\n\r\n" + body,
        # A Content-Length too short: the rest of the body, likewise.
        login + b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n" + body,
    ]
    for request in broken_off:
        with socket.create_connection(("127.0.0.1", debug_web.port), timeout=5) as conn:
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass

    wait_for(
        lambda: debug_web.output().count("Ignored premature client disconnection") >= 3,
        timeout=5,
        what="the three broken-off requests logged",
    )
    output = debug_web.output()
    assert "s3cr3t" not in output
    assert "ada@example.com" not in output
    assert output.count("Ignored premature client disconnection. No more data after: <") == 3


def test_an_answers_request_id_leads_to_its_access_line_and_its_log_lines(web):
    seen = len(web.output())

    response = requests.get(web.url("/api/v1/nothing-here/"), timeout=5)
    traced = requests.get(
        web.url("/healthz"), headers={"X-Request-ID": "client-trace-0001"}, timeout=5
    )

    request_id = response.headers["X-Request-ID"]
    assert response.status_code == 404
    assert traced.headers["X-Request-ID"] == "client-trace-0001"

    def lines_of(rid):
        return [line for line in json_lines(web.output()[seen:]) if line.get("request_id") == rid]

    wait_for(lambda: len(lines_of(request_id)) == 2, timeout=5, what="both lines of the 404")
    found, access = sorted(lines_of(request_id), key=lambda line: line["logger"])
    assert (found["logger"], found["message"]) == (
        "django.request",
        "Not Found: /api/v1/nothing-here/",
    )
    assert (access["logger"], access["status"]) == ("gunicorn.access", 404)
    wait_for(lambda: lines_of("client-trace-0001"), timeout=5, what="the traced access line")
