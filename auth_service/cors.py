"""Cross-origin access to the API for browser front ends, through django-cors-headers."""

from corsheaders import middleware
from django.conf import settings


class CorsMiddleware(middleware.CorsMiddleware):
    """django-cors-headers' middleware, awake only once an origin is configured: until then
    the API answers preflights and sets Vary exactly as it would without it."""

    def is_enabled(self, request) -> bool:
        return bool(settings.CORS_ALLOWED_ORIGINS) and super().is_enabled(request)
