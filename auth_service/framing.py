"""The headers that describe an answer's body, given to every answer however early it was made.

Django's CommonMiddleware sets Content-Length, but only on the answers that pass back through
it. Those made before it (the HTTPS redirects, the 400 for a Host the service does not serve,
static files' JSON errors, an error raised in an outer middleware) had none, and gunicorn sent
them with `Transfer-Encoding: chunked`. This middleware is the outermost, so it sees them all.

An answer without a body also loses the `text/html` type Django gives every response by
default (an empty redirect, Django's own answer to OPTIONS), as DRF's empty answers do: a
browser's preflight, wherever it lands, is never told it got HTML.
"""

from collections.abc import Callable

from django.http import HttpRequest
from django.http.response import HttpResponseBase

# RFC 9110 8.6: a 204 has no Content-Length, a 304 only the one its 200 would have had.
WITHOUT_LENGTH = (204, 304)


class ResponseFramingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if response.status_code == 204:
            # CommonMiddleware gives a 204 (logout, password change) "Content-Length: 0".
            del response["Content-Length"]
            return response
        # A streamed body stays streamed: its length is known only once it has been sent.
        if response.streaming or response.status_code in WITHOUT_LENGTH:
            return response
        # Most answers have passed back through CommonMiddleware, so their body is not joined
        # again here. Django builds a HEAD's body as a GET's (auth_service/wsgi.py drops it):
        # the length is the GET's, as RFC 9110 asks.
        if "Content-Length" not in response:
            response["Content-Length"] = str(len(response.content))
        if response["Content-Length"] == "0":
            response.headers.pop("Content-Type", None)
        return response
