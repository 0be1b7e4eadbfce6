"""Security headers on every response: Content-Security-Policy and Cache-Control for the API,
which Django does not set, and Django's own baseline (nosniff, Referrer-Policy,
Cross-Origin-Opener-Policy, X-Frame-Options).

This middleware is the outermost but one, so the baseline also reaches the responses made
before Django's SecurityMiddleware and XFrameOptionsMiddleware run or without them: the HTTPS
redirects, the health probes, static files, the trailing-slash redirect and the 400 for an
unknown host. Headers already set are kept.

Every response gets a CSP. JSON and other non-HTML responses get one that allows nothing: a
browser tricked into rendering an API body as a document can run nothing. HTML pages get one
that allows only the service's own scripts, styles and images; the API docs (Swagger UI, Redoc)
and the admin also need inline styles, which their bundles inject at run time, and Redoc runs
its search index in a blob: worker. A view that sets its own CSP (the reset page) keeps it.
"""

from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PREFIXES = ("/api/docs/", "/api/redoc/", "/admin/")
API_V1_PREFIX = "/api/v1/"


def _policy_list(value: str | Iterable[str] | None) -> str | None:
    """Django's setting takes a comma-separated string or a list, as its own middleware does."""
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        baseline = {
            "X-Content-Type-Options": "nosniff" if settings.SECURE_CONTENT_TYPE_NOSNIFF else None,
            "Referrer-Policy": _policy_list(settings.SECURE_REFERRER_POLICY),
            "Cross-Origin-Opener-Policy": settings.SECURE_CROSS_ORIGIN_OPENER_POLICY,
        }
        self.baseline = [(name, value) for name, value in baseline.items() if value]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        for name, value in self.baseline:
            response.setdefault(name, value)
        if not getattr(response, "xframe_options_exempt", False):
            response.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        response.setdefault("Content-Security-Policy", self.policy_for(request, response))
        if request.path.startswith(API_V1_PREFIX):
            # Token pairs and user data must not sit in browser or proxy caches (RFC 6749 5.1).
            response.setdefault("Cache-Control", "no-store")
        return response

    @staticmethod
    def policy_for(request: HttpRequest, response: HttpResponse) -> str:
        if not response.get("Content-Type", "").startswith("text/html"):
            return API_CSP
        if request.path.startswith(DOCS_PREFIXES):
            return DOCS_CSP
        return PAGE_CSP
