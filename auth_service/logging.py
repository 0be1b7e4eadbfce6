"""One JSON object per log line, for the platform's log search (used when DEBUG is off).

Hand-written rather than a library formatter on purpose: a generic formatter serialises every
`extra` it finds, and Django attaches the request (whose repr carries the query string, where
reset tokens travel) while gunicorn passes every request header (Authorization included) as the
access record's arguments. This one writes only plain values and a fixed set of access fields.
"""

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Extras that are objects describing the request, never written.
_UNSAFE_EXTRAS = frozenset({"request", "args"})
_PLAIN = (str, int, float, bool, type(None))
# Characters of a message kept: messages quote what clients send (a Host header of up to 8 KB,
# which Django's warning quotes twice), and Docker splits a line over 16 KB into pieces that
# are no longer JSON. Generous for anything the service says itself.
MESSAGE_MAX = 4096


def _capped(message: str) -> str:
    if len(message) <= MESSAGE_MAX:
        return message
    return f"{message[:MESSAGE_MAX]}… ({len(message) - MESSAGE_MAX} more characters)"


class JsonFormatter(logging.Formatter):
    """Format a record as a single-line JSON object with time, level, logger and message."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, tz=UTC)
        entry = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            entry.update(self.access_fields(record.args))
        else:
            entry["message"] = _capped(record.getMessage())
        for key, value in vars(record).items():
            if key in _RECORD_FIELDS or key in _UNSAFE_EXTRAS or key.startswith("_"):
                continue
            if isinstance(value, _PLAIN):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)

    @staticmethod
    def access_fields(atoms: Mapping) -> dict:
        """The request line without its query string, the status and the duration."""
        method, path, status = atoms["m"], atoms["U"], atoms["s"]
        return {
            "message": f"{method} {path} {status}",
            "method": method,
            "path": path,
            "status": int(status) if str(status).isdigit() else status,
            "duration_ms": atoms["M"],
            "remote_addr": atoms["h"],
            "request_id": atoms.get("{x-request-id}o", "-"),
        }


class DropUnavailableTraceback(logging.Filter):
    """Keep Django's "Service Unavailable: <path>" line, but without the traceback of an
    unreachable dependency: log_unavailable() has already named it, and the driver's message
    is not for the log (as the API's 503s, which reach no traceback either). Likewise a page's
    "Bad Request" for a body the client's connection failed to deliver, or a form body Django's
    parser refuses (a multipart body without its boundary): nothing of the service failed, and
    any client could fill the log with them."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Imported here: logging is configured before the apps that module needs are loaded.
        from django.http import UnreadablePostError
        from django.http.multipartparser import MultiPartParserError

        from auth_service.exceptions import is_unavailable

        error = record.exc_info[1] if record.exc_info else None
        if error is not None and (
            is_unavailable(error) or isinstance(error, (UnreadablePostError, MultiPartParserError))
        ):
            record.exc_info = None
            record.exc_text = None
        return True


class ClientErrorAsWarning(logging.Filter):
    """Requests a client got wrong that Django logs as an ERROR with a traceback, one per
    request: a Host the service does not serve (a scanner, a misrouted client), a form body or
    field count over Django's limits. Each gets a JSON 4xx; it is logged as a warning, without
    the traceback: nothing of the service failed, and anyone could fill the error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = None
        record.exc_text = None
        return True
