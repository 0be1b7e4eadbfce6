"""Cross-origin access to the API for browser front ends, through django-cors-headers."""

from urllib.parse import urlsplit

from corsheaders import middleware
from django.conf import settings
from django.http import HttpResponse


class CorsMiddleware(middleware.CorsMiddleware):
    """django-cors-headers' middleware, awake only once an origin is configured: until then
    the API answers preflights and sets Vary exactly as it would without it."""

    def is_enabled(self, request) -> bool:
        return bool(settings.CORS_ALLOWED_ORIGINS) and super().is_enabled(request)

    def check_preflight(self, request):
        """Answer a preflight at once only for a host the service serves and an origin it
        allows; any other goes through the stack like any OPTIONS request (400, 401, 404...)."""
        if super().check_preflight(request) is None:
            return None
        request.get_host()  # an unknown Host raises here: the JSON 400
        origin = request.headers.get("origin", "")
        try:
            allowed = self.origin_found_in_white_lists(origin, urlsplit(origin))
        except ValueError:  # an Origin that is no URL at all
            allowed = False
        return preflight_answer() if allowed else None


def preflight_answer() -> HttpResponse:
    """204 No Content, without a type: the library's is an empty 200 typed text/html, from an
    API whose every other answer is JSON. Browsers take any 2xx (Fetch's "ok status")."""
    answer = HttpResponse(status=204)
    del answer["Content-Type"]
    return answer
