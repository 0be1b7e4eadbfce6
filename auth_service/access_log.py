"""gunicorn's logger: access records with only the fields the access format uses, and error
records without query strings.

For every request gunicorn's own logger builds a dict of every request header, response
header and WSGI environ entry, in case the format names one. That was 7 % of a login's Python
time (py-spy, GIL samples), and it put every header, Authorization included, in the access
record's arguments. These atoms are the ones `access_log_format` (gunicorn.conf.py) and
JsonFormatter.access_fields read; any other atom a format names prints as "-".

gunicorn's error log quotes the raw request line when it refuses a request (a raw non-ASCII
byte in the URL, say) or fails handling one, and reset links carry their token in the query.
It also quotes what it could not parse where it expected a request line, a header or a chunk
size, and that can be a body or a header's value: a body sent without its framing (no
Content-Length, one too short, "chunked" over a plain body) is read as the next request line
or as a chunk size, and a header line without its colon is quoted whole. At log level debug it
quotes what it had read of a request the client broke off, headers (Authorization among them)
or such a body; no other line of its workers quotes request bytes beyond the URI.
"""

import logging
import re

from gunicorn.glogging import Logger

# From "?" up to the next space: the query of a URI quoted in a message, and a quote a client
# put in it (the message's closing quote goes too).
_QUERY = re.compile(r"\?\S+")
# gunicorn's warning for a request it refuses (gunicorn.workers.base.Worker.handle_error).
_REFUSAL = "Invalid request from ip="
# gunicorn's debug line for a request the client broke off, which quotes the bytes read so far
# (NoMoreData; its gthread and sync workers' handle): raw bytes, never a name it parsed.
_BROKEN_OFF = "Ignored premature client disconnection. "
# A Python repr of a str or bytes, as gunicorn's errors quote what they refused.
_QUOTED = re.compile(r"""b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*\"""")
# Quotes worth keeping: a request line (its query cut below), or a name a client got wrong (a
# header's, a method, a transfer coding, a version). At most 40 characters, shorter than a
# JWT's signature or a reset token (43), which a token broken over two lines puts alone on one.
_REQUEST_LINE = re.compile(r"[A-Z]{1,20} /\S* HTTP/\d\.\d")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,39}|HTTP/\d\.\d")
# gunicorn's own words in the place of a client's: a line ending in a bare LF (a hand-written or
# broken client), a chunk size line too long, the terminator a chunk lacked. Kept, or the
# warning would not say what was wrong.
_GUNICORN_WORDS = re.compile(
    r"bare LF as line terminator|line over \d+ bytes with no terminator|\\r\\n"
)


def _vetted(quote: re.Match, kept: tuple[re.Pattern, ...]) -> str:
    text = quote.group()
    inner = text[2:-1] if text.startswith("b") else text[1:-1]
    if any(pattern.fullmatch(inner) for pattern in kept):
        return text
    return f"<{len(inner)} characters withheld>"


def _refusal_vetted(quote: re.Match) -> str:
    return _vetted(quote, (_REQUEST_LINE, _NAME, _GUNICORN_WORDS))


def _broken_off_vetted(quote: re.Match) -> str:
    # What a client broke off is never a name gunicorn got wrong: a one-word body (a code, a
    # password) would pass for one. Only a whole request line is kept.
    return _vetted(quote, (_REQUEST_LINE,))


class QueryRedactingFilter(logging.Filter):
    """Replace every query string in a record's message with "?...", what a refusal quotes
    with its length unless it is a request line or a name, and what a broken-off request
    quotes unless it is a request line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        if redacted.startswith(_REFUSAL):
            redacted = _QUOTED.sub(_refusal_vetted, redacted)
        elif redacted.startswith(_BROKEN_OFF):
            redacted = _QUOTED.sub(_broken_off_vetted, redacted)
        if "?" in redacted:
            redacted = _QUERY.sub("?...", redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class AccessLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        # setup runs again on a configuration reload; one filter is enough.
        for existing in [f for f in self.error_log.filters if isinstance(f, QueryRedactingFilter)]:
            self.error_log.removeFilter(existing)
        self.error_log.addFilter(QueryRedactingFilter())

    def atoms(self, resp, req, environ, request_time) -> dict:
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        request_id = next((v for k, v in resp.headers if k.lower() == "x-request-id"), "-")
        return {
            "h": _client_address(environ),
            "m": environ.get("REQUEST_METHOD"),
            # A request gunicorn refuses after its request line (a malformed header) is logged
            # with an environ of its own, without PATH_INFO: the parsed path (no query) then.
            "U": environ.get("PATH_INFO") or getattr(req, "path", None) or "-",
            "H": environ.get("SERVER_PROTOCOL"),
            "s": status,
            "B": getattr(resp, "sent", None),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
            # gunicorn's name for a response header's atom: %({x-request-id}o)s
            "{x-request-id}o": request_id,
        }


def _client_address(environ) -> str:
    """The client's address as the rate limits see it: behind Render's proxies the socket's
    is a proxy's, and every client's line would name the same few addresses."""
    try:
        from auth_service.client_ip import client_ip_of  # loads Django: not in the master

        return client_ip_of(environ) or environ.get("REMOTE_ADDR", "-")
    except Exception:  # noqa: BLE001 - gunicorn closes the connection of a request whose
        # access line fails: without this service's settings (another app under this
        # configuration), the socket's address it is.
        return environ.get("REMOTE_ADDR", "-")
