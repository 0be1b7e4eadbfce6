"""gunicorn's logger: access records with only the fields the access format uses, and error
records without query strings.

For every request gunicorn's own logger builds a dict of every request header, response
header and WSGI environ entry, in case the format names one. That was 7 % of a login's Python
time (py-spy, GIL samples), and it put every header, Authorization included, in the access
record's arguments. These atoms are the ones `access_log_format` (gunicorn.conf.py) and
JsonFormatter.access_fields read; any other atom a format names prints as "-".

gunicorn's error log quotes the raw request line when it refuses a request (a raw non-ASCII
byte in the URL, say) or fails handling one, and reset links carry their token in the query. It
quotes a header line without a colon whole, value and all.
"""

import logging
import re

from gunicorn.glogging import Logger

# From "?" up to the next space: the query of a URI quoted in a message, and a quote a client
# put in it (the message's closing quote goes too).
_QUERY = re.compile(r"\?\S+")
# gunicorn quotes a header line without a colon whole ("Authorization Bearer eyJ..." from a
# client that dropped it), where it otherwise names a header in upper case, or says a line
# ended in a bare LF.
_HEADER_LINE = re.compile(
    r"(Invalid HTTP Header: )(?!'[A-Z0-9!#$%&*+.^_`|~-]+'$|'bare LF as line terminator'$).+$"
)


class QueryRedactingFilter(logging.Filter):
    """Replace every query string in a record's message with "?...", and a header line gunicorn
    quotes whole with '...'."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _QUERY.sub("?...", message) if "?" in message else message
        redacted = _HEADER_LINE.sub(r"\1'...'", redacted)
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
