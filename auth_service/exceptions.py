"""One place that turns every client-visible failure into the contract's JSON shape.

Request-level errors become ``{"detail": "...", "code": "..."}``; field validation keeps DRF's
``{"field": ["..."]}``. Unreachable dependencies (PostgreSQL, Redis, the broker) become a 503
``service_unavailable`` instead of a 500 page.
"""

import logging
import sys
from functools import wraps

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, InternalError, OperationalError
from django.http import Http404, HttpResponseNotAllowed, JsonResponse, UnreadablePostError
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ClusterDownError as RedisClusterDownError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import TryAgainError as RedisTryAgainError
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.views import exception_handler
from rest_framework_simplejwt.exceptions import InvalidToken

logger = logging.getLogger(__name__)

_JSON = JSONRenderer()

# What simplejwt's authenticator sends with `me`'s 401s (the Bearer scheme, realm "api").
WWW_AUTHENTICATE = 'Bearer realm="api"'

# The database failing, not the request: OperationalError (refused, timed out, shut down, lock
# or statement timeout), InternalError (a read-only standby, a transaction an outage aborted),
# InterfaceError (a connection that broke earlier in the request). DataError, IntegrityError
# and ProgrammingError are bugs: a 500 says so, where a 503 would blame the database. A Redis
# that answers but refuses writes (out of memory under `noeviction`, a read-only replica during
# a failover) or reads (a replica that lost its primary, MASTERDOWN) is unavailable too.
DATABASE_UNAVAILABLE = (OperationalError, InternalError, InterfaceError)
UNAVAILABLE_ERRORS = (
    *DATABASE_UNAVAILABLE,
    RedisConnectionError,
    RedisTimeoutError,
    RedisOutOfMemoryError,
    RedisReadOnlyError,
    RedisClusterDownError,  # also MASTERDOWN's class
    RedisTryAgainError,
    BrokerError,
)
# Replies of a Redis that is up but cannot serve for now, which redis-py raises as a plain
# ResponseError: writes stopped after a failed snapshot (MISCONF), a script past its time limit
# (BUSY), too few replicas for a write (NOREPLICAS). Other ResponseErrors are bugs (a 500).
UNAVAILABLE_REDIS_REPLIES = ("MISCONF ", "BUSY ", "NOREPLICAS ")


def is_unavailable(exc: BaseException) -> bool:
    """Whether the error is a dependency that cannot serve now (a 503), not a bug (a 500)."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    return isinstance(exc, RedisResponseError) and str(exc).startswith(UNAVAILABLE_REDIS_REPLIES)


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The service is temporarily unavailable. Try again shortly."
    default_code = "service_unavailable"


class HashingBusy(ServiceUnavailable):
    """More password hashes waiting in this process than it takes: refused at once, so that
    a burst of logins or registrations cannot hold every request thread (accounts/hash_pool.py).
    """

    default_detail = "The service is busy. Try again in a second."
    wait = 1  # DRF sends it as Retry-After


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class BodyUnreadable(exceptions.APIException):
    """The client's connection failed while its body was read (reset mid-upload: an app
    killed, a network switched). Django raises UnreadablePostError, a 500 unless mapped; the
    client, not the service, failed, as with any body that stops short of its length or last
    chunk (auth_service/wsgi.py)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request body could not be read in full."
    default_code = "bad_request"


# Plain APIExceptions with a fixed 401: DRF turns AuthenticationFailed into 403 on views that
# have no authenticator (login, refresh), which would break the contract.
class InvalidCredentials(exceptions.APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "No active account found with the given credentials."
    default_code = "invalid_credentials"


class TokenInvalid(exceptions.APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The token is invalid, expired or revoked."
    default_code = "token_invalid"


class ResetTokenInvalid(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The reset link is invalid, expired or already used. Ask for a new one."
    default_code = "reset_token_invalid"


# Codes a client can receive in `{"detail", "code"}` bodies; listed in the OpenAPI schema.
ERROR_CODES = {
    "invalid_credentials": "Wrong email or password, or the account is inactive.",
    "token_invalid": "The JWT is malformed, expired, revoked or of the wrong type.",
    "not_authenticated": "No bearer token was sent.",
    "reset_token_invalid": "The password-reset token is unknown, expired or already used.",
    "parse_error": "The body is not valid JSON, is nested too deeply, or holds a lone surrogate.",
    "unsupported_media_type": "The body is not application/json, or is compressed.",
    "payload_too_large": "The body is larger than the service accepts.",
    "range_not_satisfiable": "A static file's requested Range starts past its end.",
    "method_not_allowed": "The path does not accept this HTTP method.",
    "not_acceptable": "The Accept header names no type the endpoint can answer in.",
    "not_found": "No such path.",
    "trailing_slash_required": "The path lacks its trailing slash; a 308 redirects to it.",
    "https_required": "The request came over plain HTTP; a 308 redirects to its HTTPS URL.",
    "throttled": "Too many requests; retry after the Retry-After header's seconds.",
    "bad_request": "Refused before any endpoint saw it: a Host the service does not serve, or "
    "a request line, header or chunk that is malformed; or a body the client's connection "
    "failed to deliver whole.",
    "uri_too_long": "The request line is longer than the server reads (4094 bytes).",
    "headers_too_large": "A header is longer than the server reads (8190 bytes), or there are "
    "more than 100.",
    "not_implemented": "The request's Transfer-Encoding is one the server does not know.",
    "permission_denied": (
        "The request is refused whatever its credentials, or a form post failed the CSRF check."
    ),
    "service_unavailable": "A dependency (database, Redis, broker) is unreachable; retry later.",
    "server_error": "An unexpected error; it has been logged.",
}


def json_exception_handler(exc, context):
    """DRF exception handler: the contract's error shape for every exception a view raises."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, UnreadablePostError):
        exc = BodyUnreadable()
    elif isinstance(exc, Http404):
        # DRF raises Django's Http404 itself (e.g. for an unknown `?format=`). Its message is
        # not for clients, so the contract's fixed text, like handler404's.
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif is_unavailable(exc):
        log_unavailable(exc)
        exc = ServiceUnavailable()
    elif isinstance(exc, InvalidToken | exceptions.AuthenticationFailed):
        # Only the JWT authenticator raises these; clients get one stable code for them all.
        auth_header = getattr(exc, "auth_header", None)
        exc = TokenInvalid()
        exc.auth_header = auth_header

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, HashingBusy):
        log_hashing_busy(response)
    if isinstance(exc.detail, dict | list) and not isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": _first_text(exc.detail), "code": _first_code(exc.get_codes())}
    elif not isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": str(exc.detail), "code": exc.detail.code}
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        # RFC 7235: every 401 names the scheme, not only those DRF's authenticator raised.
        response.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    request = context.get("request")
    if request is not None:
        # Errors are JSON even from views that render something else (the schema's YAML), and
        # even when the client asked for a format no renderer has. DRF renders the response
        # with the request's accepted renderer.
        request.accepted_renderer, request.accepted_media_type = _JSON, _JSON.media_type
    return response


def log_hashing_busy(response) -> None:
    """A refusal under a burst of logins is the load shedding at work, not a fault: a warning
    (the access log counts them), instead of Django's error with a traceback for every 503."""
    logger.warning("password hashing busy: request refused (503, Retry-After %s)", HashingBusy.wait)
    response._has_been_logged = True  # what stops django.request's own "Service Unavailable"


def log_unavailable(exc: Exception) -> None:
    """Log an error is_unavailable() accepts, naming the dependency but not the error's text."""
    logger.error("dependency unavailable: %s (%s)", _dependency(exc), type(exc).__name__)


def _dependency(exc: Exception) -> str:
    """Which dependency failed, for the log: kombu and Django both name errors OperationalError."""
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return "database"
    if isinstance(exc, BrokerError):
        return "broker"
    return "redis"


def _first_code(codes) -> str:
    while isinstance(codes, dict | list):
        codes = next(iter(codes.values() if isinstance(codes, dict) else codes), "error")
    return str(codes)


def _first_text(detail) -> str:
    while isinstance(detail, dict | list):
        detail = next(iter(detail.values() if isinstance(detail, dict) else detail), "")
    return str(detail)


# Without spaces, like the bodies DRF's JSONRenderer writes, so all the service's JSON matches.
COMPACT_JSON = {"separators": (",", ":")}


def error_body(detail: str, code: str, status_code: int) -> JsonResponse:
    """A contract-shaped error outside DRF views (Django's 404/500 handlers, health checks)."""
    return JsonResponse(
        {"detail": detail, "code": code}, status=status_code, json_dumps_params=COMPACT_JSON
    )


def not_found(request, exception=None):
    return error_body("Not found.", "not_found", 404)


def bad_request(request, exception=None):
    # A form body over DATA_UPLOAD_MAX_MEMORY_SIZE (the pages): the API's 413, not a plain 400.
    if isinstance(exception, RequestDataTooBig):
        return error_body(PayloadTooLarge.default_detail, PayloadTooLarge.default_code, 413)
    return error_body("Bad request.", "bad_request", 400)


def permission_denied(request, exception=None):
    return error_body("Permission denied.", "permission_denied", 403)


def csrf_failure(request, reason=""):
    """Django's CSRF_FAILURE_VIEW (the admin's forms): the contract's 403, not Django's HTML
    page. The reason stays in Django's own warning log, not in the response."""
    return permission_denied(request)


def server_error(request):
    """Django's handler500, called while the exception is being handled: an unreachable
    dependency outside DRF's views (the admin, a session) is a 503 there too, not a 500."""
    exc = sys.exc_info()[1]
    if isinstance(exc, HashingBusy):  # the admin's sign-in during a login burst
        response = error_body(HashingBusy.default_detail, HashingBusy.default_code, 503)
        response["Retry-After"] = str(HashingBusy.wait)
        log_hashing_busy(response)
        return response
    if exc is not None and is_unavailable(exc):
        log_unavailable(exc)
        return error_body(ServiceUnavailable.default_detail, ServiceUnavailable.default_code, 503)
    if isinstance(exc, UnreadablePostError):  # a page's form (the reset page, the admin)
        return error_body(BodyUnreadable.default_detail, BodyUnreadable.default_code, 400)
    return error_body("Internal server error.", "server_error", 500)


def allow_methods(*methods: str):
    """A view decorator: other methods get the contract's JSON 405 with an Allow header, where
    Django's require_http_methods answers an empty HTML one."""

    def decorator(view):
        @wraps(view)
        def checked(request, *args, **kwargs):
            if request.method not in methods:
                return method_not_allowed(request.method, methods)
            return view(request, *args, **kwargs)

        return checked

    return decorator


def method_not_allowed(method: str, allowed) -> JsonResponse:
    response = error_body(f'Method "{method}" not allowed.', "method_not_allowed", 405)
    response["Allow"] = ", ".join(allowed)
    return response


class JsonMethodNotAllowedMiddleware:
    """Django's own empty HTML 405 (a class-based view's: the admin's sign-out takes only POST)
    as the contract's JSON 405, with the same Allow header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = [method.strip() for method in response["Allow"].split(",")]
            return method_not_allowed(request.method, [m for m in allowed if m])
        return response
