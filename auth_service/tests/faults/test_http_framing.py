"""How request and response bodies are framed, through the real gunicorn (shared with the fault
tests): chunked request bodies, HEAD answered without one, and answers sent with their length."""

import json
import re
import socket
import time

import pytest
import requests

from auth_service.tests.faults.harness import WebServer, json_lines, wait_for

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


HEAD_PATHS = [
    "/healthz",
    "/readyz",
    "/reset-password/?token=s3cr3t-reset-token",
    "/api/v1/auth/me/",  # 401
    "/api/v1/auth/login",  # 308
    "/static/admin/css/base.css",  # WhiteNoise
]
# Lengths as sent: requests would otherwise ask WhiteNoise for a compressed file.
IDENTITY = {"Accept-Encoding": "identity"}


def head_lines(output: str) -> set[tuple[str, int]]:
    """The HEAD requests gunicorn wrote access lines for: (path, status)."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {
        (line["path"], line["status"])
        for line in lines
        if line.get("logger") == "gunicorn.access" and line["method"] == "HEAD"
    }


def head(web, path: str) -> requests.Response:
    """HEAD the path; fails if gunicorn had to drop body bytes the app sent with it."""
    seen = len(web.output())
    response = requests.head(web.url(path), headers=IDENTITY, timeout=15)
    # gunicorn warns, if at all, before it writes the access line
    wait_for(
        lambda: (path.split("?")[0], response.status_code) in head_lines(web.output()[seen:]),
        timeout=5,
        what="the HEAD's access line",
    )
    assert "no-body response" not in web.output()[seen:]
    return response


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_a_static_file_answers_other_methods_with_the_contracts_json_405(web, method):
    response = requests.request(method, web.url("/static/admin/css/base.css"), timeout=15)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json() == {
        "detail": f'Method "{method}" not allowed.',
        "code": "method_not_allowed",
    }


def test_a_range_past_a_static_files_end_is_the_contracts_json_416(web):
    response = requests.get(
        web.url("/static/admin/css/base.css"),
        headers={**IDENTITY, "Range": "bytes=99999999-"},
        timeout=15,
    )

    assert response.status_code == 416
    assert response.json() == {
        "detail": "The requested range is not satisfiable.",
        "code": "range_not_satisfiable",
    }
    assert response.headers["Content-Range"].startswith("bytes */")
    # A range within the file is served as before
    part = requests.get(
        web.url("/static/admin/css/base.css"),
        headers={**IDENTITY, "Range": "bytes=0-9"},
        timeout=15,
    )
    assert (part.status_code, len(part.content)) == (206, 10)


@pytest.mark.parametrize("path", HEAD_PATHS)
def test_head_gets_the_status_and_length_of_get_and_no_body(web, api, path):
    got = requests.get(web.url(path), headers=IDENTITY, allow_redirects=False, timeout=15)

    answer = head(web, path)

    assert answer.status_code == got.status_code
    assert answer.headers["Content-Length"] == got.headers["Content-Length"]
    assert got.headers["Content-Length"] == str(len(got.content))
    assert answer.headers["Content-Type"] == got.headers["Content-Type"]
    assert answer.content == b""


def test_head_on_an_endpoint_without_it_is_a_405_without_a_body(web, api):
    answer = head(web, "/api/v1/auth/login/")

    assert answer.status_code == 405
    # The length of the JSON that names the method
    assert answer.headers["Content-Length"] == str(
        len(b'{"detail":"Method \\"HEAD\\" not allowed.","code":"method_not_allowed"}')
    )
    assert answer.content == b""


def raw_exchange(web, request: bytes) -> tuple[str, dict, bytes]:
    """Send bytes as they are (no client library would send these) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=15) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
    return status_line.split(" ", 1)[1], headers, body


FRONT_END = "https://app.example.com"


@pytest.fixture(scope="module")
def front_door(service_env, tmp_path_factory):
    """A server as production runs it behind its proxy: plain HTTP redirected to HTTPS, and a
    front end on another origin allowed."""
    env = {**service_env, "SECURE_SSL_REDIRECT": "true", "CORS_ALLOWED_ORIGINS": FRONT_END}
    log = tmp_path_factory.mktemp("front-door") / "gunicorn.log"
    server = WebServer(env=env, log=log, workers=1)
    server.start()
    yield server
    server.stop()


def request_bytes(method: str, path: str, *headers: str, host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


OVER_HTTPS = "X-Forwarded-Proto: https"
PREFLIGHT = (f"Origin: {FRONT_END}", "Access-Control-Request-Method: POST")
# Answers made before CommonMiddleware, which gives the others their length.
EARLY_ANSWERS = {
    "the API's HTTPS redirect": (request_bytes("GET", "/api/v1/auth/me/"), "308"),
    "a page's HTTPS redirect": (request_bytes("GET", "/reset-password/?token=t"), "301"),
    "a Host the service does not serve": (
        request_bytes("GET", "/api/v1/auth/me/", OVER_HTTPS, host="evil.example"),
        "400",
    ),
    "a preflight from such a Host": (
        request_bytes("OPTIONS", "/api/v1/auth/me/", OVER_HTTPS, *PREFLIGHT, host="evil.example"),
        "400",
    ),
    "a static file's 405": (
        request_bytes("POST", "/static/admin/css/base.css", OVER_HTTPS, "Content-Length: 0"),
        "405",
    ),
    "a static file's 416": (
        request_bytes("GET", "/static/admin/css/base.css", OVER_HTTPS, "Range: bytes=99999999-"),
        "416",
    ),
}


@pytest.mark.parametrize("case", EARLY_ANSWERS)
def test_an_answer_made_before_the_common_middleware_is_sent_with_its_length(front_door, case):
    request, status = EARLY_ANSWERS[case]

    answered, headers, body = raw_exchange(front_door, request)

    assert answered.split()[0] == status
    assert "transfer-encoding" not in headers
    assert headers["content-length"] == str(len(body))


def test_head_of_an_early_answer_has_the_length_of_its_get_and_no_body(front_door):
    _, got, body = raw_exchange(front_door, request_bytes("GET", "/api/v1/auth/me/"))

    answered, headers, nothing = raw_exchange(front_door, request_bytes("HEAD", "/api/v1/auth/me/"))

    assert answered.startswith("308 ")
    assert headers["content-length"] == got["content-length"] == str(len(body))
    assert nothing == b""


def test_a_preflight_from_the_front_end_is_a_204_with_no_body(front_door):
    answered, headers, body = raw_exchange(
        front_door, request_bytes("OPTIONS", "/api/v1/auth/login/", OVER_HTTPS, *PREFLIGHT)
    )

    assert answered == "204 No Content"
    assert headers["access-control-allow-origin"] == FRONT_END
    assert body == b""
    assert not {"content-type", "content-length", "transfer-encoding"} & set(headers)


SECRET_LOOKING = "Secret-token-value"
REFUSED_BY_THE_SERVER = {
    "malformed request line": (
        f"GET /api/v1/auth/me/?{SECRET_LOOKING} HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        "400 Bad Request",
        "bad_request",
    ),
    "request line too long": (
        f"GET /api/v1/auth/me/?q={SECRET_LOOKING}{'a' * 5000} HTTP/1.1\r\nHost: x\r\n\r\n",
        "414 Request-URI Too Long",
        "uri_too_long",
    ),
    "header too long": (
        f"GET /api/v1/auth/me/ HTTP/1.1\r\nHost: x\r\nX-Big: {SECRET_LOOKING}{'a' * 9000}\r\n\r\n",
        "431 Request Header Fields Too Large",
        "headers_too_large",
    ),
    "unknown transfer coding": (
        "POST /api/v1/auth/login/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br, chunked\r\n"
        "\r\n1\r\n{\r\n0\r\n\r\n",
        "501 Not Implemented",
        "not_implemented",
    ),
    # gunicorn takes gzip and removes the chunking, but leaves the body gzip-coded
    "transfer coding the server does not undo": (
        "POST /api/v1/auth/login/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Transfer-Encoding: gzip, chunked\r\n\r\n1\r\n{\r\n0\r\n\r\n",
        "501 Not Implemented",
        "not_implemented",
    ),
    "malformed chunk": (
        "POST /api/v1/auth/login/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"\r\n{SECRET_LOOKING}\r\n{{}}\r\n0\r\n\r\n",
        "400 Bad Request",
        "bad_request",
    ),
}


@pytest.mark.parametrize("case", REFUSED_BY_THE_SERVER)
def test_a_request_the_server_refuses_before_the_app_gets_a_json_error(web, api, case):
    request, status, code = REFUSED_BY_THE_SERVER[case]

    answered, headers, body = raw_exchange(web, request.encode())

    assert answered == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["cache-control"] == "no-store"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body)["code"] == code
    # Nothing of the request is echoed back
    assert SECRET_LOOKING.encode() not in body


@pytest.mark.parametrize("given", ["gateway-trace-0001", "bad id\tnot kept"])
def test_the_apps_own_refusal_of_a_coding_carries_a_request_id(web, api, given):
    request = REFUSED_BY_THE_SERVER["transfer coding the server does not undo"][0]
    request = request.replace("Host: x\r\n", f"Host: x\r\nX-Request-ID: {given}\r\n")

    answered, headers, _ = raw_exchange(web, request.encode())

    assert answered == "501 Not Implemented"
    if given == "gateway-trace-0001":
        assert headers["x-request-id"] == given
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    answer_id = headers["x-request-id"]
    wait_for(
        lambda: any(
            (line.get("status"), line.get("request_id")) == (501, answer_id)
            for line in json_lines(web.output())
        ),
        timeout=5,
        what="the access line with the answer's id",
    )


def received_until_closed(client: socket.socket, timeout: float = 5) -> bytes:
    client.settimeout(timeout)
    received = b""
    while chunk := client.recv(4096):
        received += chunk
    return received


def keeps_taking(client: socket.socket, seconds: float = 5) -> bool:
    """Whether the server still takes a header line every half second for this long."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            client.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.5)
    except OSError:
        return False
    return True


def test_clients_that_stop_halfway_through_a_request_do_not_hold_the_server(service_env, tmp_path):
    # One worker with four request threads, and 2 s to receive a request once it starts
    env = {**service_env, "GUNICORN_THREADS": "4", "REQUEST_READ_TIMEOUT": "2"}
    server = WebServer(env=env, log=tmp_path / "gunicorn.log", workers=1)
    server.start()
    try:
        host = ("127.0.0.1", server.port)
        login = b"POST /api/v1/auth/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        stalled = [
            # in the headers
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            # in a body of known length
            login + b'Content-Type: application/json\r\nContent-Length: 60\r\n\r\n{"email":',
            # in a chunked body
            login
            + b'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"em',
        ]
        clients = []
        for request in stalled + stalled[:1]:  # as many as the threads
            client = socket.create_connection(host, timeout=10)
            client.sendall(request)
            clients.append(client)
        # A client trickling a request a byte at a time gets no more time than one that stops
        trickler = socket.create_connection(host, timeout=10)
        trickler.sendall(b"GET /healthz HTTP/1.1\r\n")

        # Every thread is taken, yet the health check is answered once their time is up
        started = time.monotonic()
        health = requests.get(server.url("/healthz"), timeout=15)
        assert health.status_code == 200
        assert time.monotonic() - started < 6

        # The stalled bodies, of known length and chunked, are answered as bodies that ended
        # early...
        for client in (clients[1], clients[2]):
            answer = received_until_closed(client)
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert b'"code":"bad_request"' in answer
        # ...and the others are closed
        for client in (clients[0], clients[3]):
            assert received_until_closed(client) == b""
        assert not keeps_taking(trickler)
        assert "request not received within 2 s; connection closed" in server.output()
        for client in [*clients, trickler]:
            client.close()
    finally:
        server.stop()


@pytest.fixture
def quick_read_deadline(service_env, tmp_path):
    """A server whose requests have 1 s to arrive."""
    env = {**service_env, "GUNICORN_THREADS": "4", "REQUEST_READ_TIMEOUT": "1"}
    server = WebServer(env=env, log=tmp_path / "gunicorn.log", workers=1)
    server.start()
    yield server
    server.stop()


def test_a_request_sent_in_time_is_served_when_the_app_reads_it_late(
    quick_read_deadline, account, sql
):
    # The accounts table is locked: the request's authentication waits past the deadline
    # before the view reads the body, which came just after the headers
    with sql.cursor() as cursor:
        cursor.execute("LOCK TABLE accounts_user IN ACCESS EXCLUSIVE MODE")
    body = json.dumps({"refresh": account.refresh}).encode()
    client = socket.create_connection(("127.0.0.1", quick_read_deadline.port), timeout=15)
    client.sendall(
        b"POST /api/v1/auth/logout/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {account.access}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    )
    time.sleep(0.2)
    client.sendall(body)
    time.sleep(2.5)
    sql.rollback()

    answer = received_until_closed(client, timeout=15)
    client.close()

    assert answer.startswith(b"HTTP/1.1 204 "), answer[:200]


def test_a_slow_reader_gets_the_whole_response(quick_read_deadline):
    path = "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js.map"
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(15)
    client.connect(("127.0.0.1", quick_read_deadline.port))
    client.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n".encode()
        + b"Connection: close\r\n\r\n"
    )
    first = client.recv(4096)
    time.sleep(2.5)  # the client stops reading for longer than the read deadline

    answer = first + received_until_closed(client, timeout=15)
    client.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        ).split(b":")[1]
    )
    assert length > 1_000_000
    assert len(body) == length
