"""The WSGI application gunicorn serves: Django, with request bodies over the limit left unread,
chunked ones given a length, ones cut short of their length refused, other transfer codings
refused, and HEAD answered without a body."""

import io
import os

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.wsgi import get_wsgi_application
from gunicorn.http.errors import NoMoreData

from auth_service import request_id, server_errors

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auth_service.settings")


class _BodyTooLarge(io.RawIOBase):
    """The body of a request over DATA_UPLOAD_MAX_MEMORY_SIZE: reading it fails the way Django
    fails such a body, so no parser ever sees the part that was read."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")


class _BodyCutShort(OSError):
    """The connection ended before the body its Content-Length announced had arrived."""


class _DeclaredLengthBody:
    """A body of known length whose reading fails, as a connection reset mid-body does, when
    the connection ends (or REQUEST_READ_TIMEOUT cuts it) before all of it has arrived.

    gunicorn's reader then hands on what came and says nothing, so a body whose first part is
    whole JSON (or a form missing the end of its last field) would be served as the request.
    Django turns the error into UnreadablePostError: the API's 400 `bad_request`.
    """

    def __init__(self, stream, length: int) -> None:
        self._stream = stream
        self._left = length

    def read(self, size=-1) -> bytes:
        wanted = self._wanted(size)
        return self._counted(self._stream.read(wanted), wanted)

    def readline(self, size=-1) -> bytes:
        wanted = self._wanted(size)
        line = self._stream.readline(wanted)
        return self._counted(line, len(line) if line.endswith(b"\n") else wanted)

    def _wanted(self, size) -> int:
        return self._left if size is None or size < 0 else min(size, self._left)

    def _counted(self, data: bytes, wanted: int) -> bytes:
        self._left -= len(data)
        if len(data) < wanted:
            raise _BodyCutShort(f"the body ended {self._left} bytes short of its Content-Length")
        return data


def _declared_length(environ) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # gunicorn refuses a malformed length before the app; otherwise Django judges it


def _refusal(environ, status_code: int) -> tuple[str, list[tuple[str, str]], bytes]:
    """The JSON error of an answer given here, before Django's middleware: with its request
    id, as every answer of the application has."""
    status, headers, body = server_errors.json_error(status_code)
    given = environ.get("HTTP_X_REQUEST_ID", "")
    return status, [*headers, (request_id.HEADER, request_id.request_id_for(given))], body


def read_chunked_bodies(app):
    """Read a chunked request body before Django, which reads a body without a length as empty;
    leave any body declared over the limit unread (reading it raises RequestDataTooBig); and
    have a body of declared length fail to read if the connection ends before it is whole.

    gunicorn de-chunks the body but can give no CONTENT_LENGTH. Its `wsgi.input_terminated`
    input ends where the body does, so the body is read here, one byte past the limit at most,
    and handed on with its length. A body over the limit gets a length over it too, so Django
    refuses it exactly as a Content-Length over the limit: the API's 413 `payload_too_large`.
    """

    def wrapped(environ, start_response):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if (
            "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            and not environ.get("CONTENT_LENGTH")
            and environ.get("wsgi.input_terminated")
        ):
            # gunicorn's input returns all that is asked for unless the body ends first.
            try:
                body = environ["wsgi.input"].read(limit + 1)
            except NoMoreData:
                # The connection ended (or REQUEST_READ_TIMEOUT cut it) before the last chunk:
                # gunicorn would close it without an answer.
                status, headers, error = _refusal(environ, 400)
                start_response(status, [*headers, ("Connection", "close")])
                return [error]
            environ["wsgi.input"] = io.BytesIO(body) if len(body) <= limit else _BodyTooLarge()
            environ["CONTENT_LENGTH"] = str(len(body))
        elif (declared := _declared_length(environ)) > limit:
            # Django counts only a form's fields against the limit, not its file parts, and
            # streams those to disk: no body over the limit is read at all, of any type.
            environ["wsgi.input"] = _BodyTooLarge()
        elif declared:
            environ["wsgi.input"] = _DeclaredLengthBody(environ["wsgi.input"], declared)
        return app(environ, start_response)

    return wrapped


def refuse_codings_left_on(app):
    """Answer 501 to a body with a transfer coding besides chunked ("gzip, chunked"): gunicorn
    takes those codings and removes the chunking, but hands the body on still gzip-coded, as
    if it were the JSON. RFC 9112 section 6.1: a server that does not apply a coding says 501,
    as gunicorn does itself for a coding it has never heard of."""

    def wrapped(environ, start_response):
        codings = environ.get("HTTP_TRANSFER_ENCODING", "").lower().split(",")
        if any(coding.strip() not in ("", "chunked") for coding in codings):
            status, headers, body = _refusal(environ, 501)
            start_response(status, headers)
            return [body]
        return app(environ, start_response)

    return wrapped


def no_body_on_head(app):
    """Answer HEAD with the headers of GET, Content-Length included (RFC 9110), and no body.

    Django renders a HEAD like a GET and sends the body; gunicorn then drops it and logs a
    warning for each such request. Only for exactly "HEAD", the test gunicorn makes: a response
    gunicorn sends in full must keep the body its Content-Length announces.
    """

    def wrapped(environ, start_response):
        body = app(environ, start_response)
        if environ["REQUEST_METHOD"] != "HEAD":
            return body
        # Closing ends Django's request (request_finished) as sending the body would have.
        if hasattr(body, "close"):
            body.close()
        return []

    return wrapped


application = no_body_on_head(refuse_codings_left_on(read_chunked_bodies(get_wsgi_application())))
