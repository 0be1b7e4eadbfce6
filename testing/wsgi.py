"""Requests through the WSGI application as gunicorn hands them over: auth_service/wsgi.py's
steps included, which Django's test client skips."""

import json
from dataclasses import dataclass
from wsgiref.util import setup_testing_defaults

from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import IterUnreader

from auth_service.wsgi import application


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(method: str, path: str, **environ) -> Answer:
    """One request through the application, as a WSGI server makes it."""
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, HTTP_HOST="testserver")
    started = {}

    def start_response(status, headers, exc_info=None):
        started.update(status=int(status.split()[0]), headers=dict(headers))

    iterable = application(environ, start_response)
    try:
        body = b"".join(iterable)
    finally:
        if hasattr(iterable, "close"):
            iterable.close()
    return Answer(started["status"], started["headers"], body)


def cut_short(received: bytes, missing: int) -> dict:
    """The environ of a body whose connection ended (or whose read deadline passed) `missing`
    bytes before the end its Content-Length announced: gunicorn's input then gives what came."""
    declared = len(received) + missing
    return {
        "wsgi.input": Body(LengthReader(IterUnreader([received]), declared)),
        "CONTENT_LENGTH": str(declared),
    }
