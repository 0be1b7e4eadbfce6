"""The contract's JSON error shape for requests gunicorn refuses before Django sees them.

gunicorn answers some requests itself, with a small HTML page: a request line or header over
its size limits (414, 431), a malformed request line, header or chunk (400), a transfer coding
it does not know (501), or a response the app could not start (500). Clients of this API parse
`{"detail", "code"}` on every error, so these get it too. The detail is fixed per status:
gunicorn's own message quotes the request back, which tells the client nothing it did not send.
"""

import json
from http import HTTPStatus

from gunicorn import util

from auth_service.security_headers import API_CSP

ERRORS = {
    400: ("Bad request.", "bad_request"),
    403: ("Permission denied.", "permission_denied"),
    414: ("The request URL is too long.", "uri_too_long"),
    417: ("The Expect header names an expectation the service cannot meet.", "bad_request"),
    431: ("The request headers are too large.", "headers_too_large"),
    501: ("The request's transfer coding is not supported.", "not_implemented"),
}
SERVER_ERROR = ("Internal server error.", "server_error")
REASONS = {status.value: status.phrase for status in HTTPStatus}


def json_error(status_int: int, reason: str = "") -> tuple[str, list[tuple[str, str]], bytes]:
    """The status line, headers and body of the error, as a WSGI app starts a response."""
    fallback = SERVER_ERROR if status_int >= 500 else ERRORS[400]
    detail, code = ERRORS.get(status_int, fallback)
    body = json.dumps({"detail": detail, "code": code}, separators=(",", ":")).encode()
    # The standard reason phrase: gunicorn passes "Bad Request" with its 501.
    status = f"{status_int} {REASONS.get(status_int, reason)}"
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", API_CSP),
    ]
    return status, headers, body


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature and framing, with a JSON body."""
    status, headers, body = json_error(status_int, reason)
    lines = [f"HTTP/1.1 {status}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    head = "\r\n".join(lines) + "\r\n\r\n"
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    """Make gunicorn's workers write these (they call `util.write_error` at the time of need)."""
    util.write_error = write_json_error
