"""OpenAPI pieces shared by every view: the error body and its documented codes."""

from collections import OrderedDict

from django.contrib.auth.password_validation import (
    MinimumLengthValidator,
    get_default_password_validators,
    password_validators_help_texts,
)
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView
from rest_framework import serializers
from rest_framework.exceptions import NotAcceptable, NotAuthenticated, UnsupportedMediaType
from rest_framework.response import Response

from auth_service import server_errors
from auth_service.exceptions import (
    ERROR_CODES,
    BodyUnreadable,
    PayloadTooLarge,
    ServiceUnavailable,
    TokenInvalid,
)


class ErrorSerializer(serializers.Serializer):
    """`{"detail", "code"}`: a request-level error."""

    detail = serializers.CharField(help_text="Human-readable explanation.")
    code = serializers.ChoiceField(
        choices=sorted(ERROR_CODES.items()),
        help_text="Stable machine-readable code: "
        + "; ".join(f"`{code}`: {text}" for code, text in sorted(ERROR_CODES.items())),
    )


FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "description": 'Validation errors keyed by field name, e.g. `{"email": ["Invalid."]}`.',
}


def error(description: str, code: str, detail: str, *more: tuple[str, str]) -> OpenApiResponse:
    """A documented `{"detail", "code"}` response with an example of each (code, detail)."""
    return OpenApiResponse(
        ErrorSerializer,
        description=description,
        examples=[
            OpenApiExample(code, value={"detail": detail, "code": code})
            for code, detail in ((code, detail), *more)
        ],
    )


# A 400 is either field errors or, for a body that is not JSON at all, `parse_error`.
BAD_REQUEST_SCHEMA = {"oneOf": [{"$ref": "#/components/schemas/Error"}, FIELD_ERRORS_SCHEMA]}


# A 400 `{"detail", "code"}` any operation that takes a body can get, whatever its fields.
BODY_ERRORS = (
    ("parse_error", "JSON parse error - Expecting value."),
    (BodyUnreadable.default_code, BodyUnreadable.default_detail),
)


def field_errors(description: str, example: dict, *more: tuple[str, str]) -> OpenApiResponse:
    """A documented 400: DRF-style field errors, the operation's own `{"detail", "code"}` errors
    (`more`, as (code, detail)), or one of the body's: not JSON, or not received in full."""
    return OpenApiResponse(
        BAD_REQUEST_SCHEMA,
        description=f"{description} A body that is not valid JSON gets `parse_error`; one that "
        "arrives cut short of its length, `bad_request`.",
        examples=[
            OpenApiExample("validation", value=example),
            *(
                OpenApiExample(code, value={"detail": detail, "code": code})
                for code, detail in (*more, *BODY_ERRORS)
            ),
        ],
    )


# Sent without a bearer token: DRF's own answer, with its code.
NO_BEARER = (NotAuthenticated.default_code, str(NotAuthenticated.default_detail))
UNAUTHENTICATED = error(
    "Missing (`not_authenticated`), or invalid, expired or revoked (`token_invalid`) bearer token.",
    TokenInvalid.default_code,
    TokenInvalid.default_detail,
    NO_BEARER,
)
UNAVAILABLE = error(
    "A dependency is unreachable.",
    ServiceUnavailable.default_code,
    ServiceUnavailable.default_detail,
)
THROTTLED = error(
    "Too many requests. The `Retry-After` header says how many seconds to wait.",
    "throttled",
    "Request was throttled. Expected available in 42 seconds.",
)


# Headers the service sends with every response of a status, whichever view answers.
RESPONSE_HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "description": 'The scheme to authenticate with: `Bearer realm="api"`.',
            "schema": {"type": "string"},
            "required": True,
        }
    },
    "429": {
        "Retry-After": {
            "description": "Whole seconds until the limit resets.",
            "schema": {"type": "integer", "minimum": 1},
            "required": True,
        }
    },
    "503": {
        "Retry-After": {
            "description": "Sent when every password-hashing thread is busy: seconds to wait "
            "before retrying. Absent when a dependency is unreachable.",
            "schema": {"type": "integer", "minimum": 1},
            "required": False,
        }
    },
}


# Sent with every response (auth_service/request_id.py).
REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "The request's id, as in the service's logs: the `X-Request-ID` the "
        "request carried if it looked like one (8-128 letters, digits and `._:-`), else a new "
        "one. Quote it when reporting a problem.",
        "schema": {"type": "string"},
        "required": True,
    }
}


# A 501 comes from the application for a coding gunicorn knows but leaves on the body (`gzip,
# chunked`), and from gunicorn itself, before the application, for one it does not know.
REQUEST_ID_HEADER_UNLESS_GUNICORN = {
    "X-Request-ID": {
        **REQUEST_ID_HEADER["X-Request-ID"],
        "description": REQUEST_ID_HEADER["X-Request-ID"]["description"]
        + " Absent when the server refused the request before the application read it.",
        "required": False,
    }
}


def document_response_headers(result, generator, request, public):
    """Schema post-processing hook: every response declares X-Request-ID (a 501 the one it may
    carry), every 401 WWW-Authenticate, every 429 Retry-After (and every 503 the one it may
    carry)."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for status_code, response in operation.get("responses", {}).items():
                request_id = (
                    REQUEST_ID_HEADER_UNLESS_GUNICORN if status_code == "501" else REQUEST_ID_HEADER
                )
                response["headers"] = {
                    **response.get("headers", {}),  # a view's own (a Location, say)
                    **RESPONSE_HEADERS.get(status_code, {}),
                    **request_id,
                }
    return result


NOT_IMPLEMENTED_DETAIL, NOT_IMPLEMENTED_CODE = server_errors.ERRORS[501]

# Errors any operation can answer with, whatever its view: the negotiation (406), a transfer
# coding the service does not undo (501, auth_service/wsgi.py) and, for an operation that takes
# a body, the parser (413, 415). Each with the (code, detail) examples of what sends it.
COMMON_ERRORS = {
    "406": (
        "The Accept header names no type the endpoint can answer in.",
        False,
        [(NotAcceptable.default_code, str(NotAcceptable.default_detail))],
    ),
    "413": (
        "The body is larger than the service accepts (DATA_UPLOAD_MAX_MEMORY_SIZE).",
        True,
        [(PayloadTooLarge.default_code, PayloadTooLarge.default_detail)],
    ),
    "415": (
        "The body is not application/json, or is compressed.",
        True,
        [
            (
                UnsupportedMediaType.default_code,
                str(UnsupportedMediaType.default_detail).format(media_type="text/plain"),
            )
        ],
    ),
    "501": (
        "The request's Transfer-Encoding names a coding besides `chunked`.",
        False,
        [(NOT_IMPLEMENTED_CODE, NOT_IMPLEMENTED_DETAIL)],
    ),
}


def document_common_errors(result, generator, request, public):
    """Schema post-processing hook: every operation lists the errors of the request's framing
    it can get, so clients generated from the document expect them."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status_code, (description, needs_body, examples) in COMMON_ERRORS.items():
                if needs_body and "requestBody" not in operation:
                    continue
                responses.setdefault(status_code, _error_response(description, examples))
    return result


def _error_response(description: str, examples: list[tuple[str, str]]) -> dict:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "examples": {
                    code: {"value": {"detail": detail, "code": code}, "summary": code}
                    for code, detail in examples
                },
            }
        },
    }


# Marks a request field that sets a password (accounts.serializers.NewPasswordField). The
# rules it must pass are settings.AUTH_PASSWORD_VALIDATORS, checked after the field itself (so
# that a short password gets their message), which the schema generator cannot see.
NEW_PASSWORD_MARK = "x-new-password"  # noqa: S105 (a schema key, not a secret)


def document_password_rules(result, generator, request, public):
    """Schema post-processing hook: a new password's minimum length and rules, from the
    configured password validators, replace the field's own "any non-empty string"."""
    validators = get_default_password_validators()
    lengths = [v.min_length for v in validators if isinstance(v, MinimumLengthValidator)]
    rules = " ".join(password_validators_help_texts(validators))
    for component in result.get("components", {}).get("schemas", {}).values():
        for field in component.get("properties", {}).values():
            if field.pop(NEW_PASSWORD_MARK, False):
                field["minLength"] = max([1, *lengths])
                field["description"] = rules
    return result


# Rendered documents by format, newest last: one changes only with a deploy, and building and
# rendering one costs about 25 ms of CPU, which anyone asking for it in a loop would otherwise
# spend.
_DOCUMENTS: OrderedDict[str, tuple[bytes, dict[str, str]]] = OrderedDict()
_DOCUMENTS_MAX = 16
_DOCUMENT_HEADERS = ("Content-Type", "Content-Disposition")


class SchemaView(SpectacularAPIView):
    """The OpenAPI document, rendered once per format. What a client could vary to have it
    built again is ignored: the API has one version (drf-spectacular would print a `?version=`
    into the document and its file name), speaks English only (it would build one per
    `?lang=`, an unknown one each time), renders one way (`;indent=` and other parameters of
    the Accept header's media type), and names no server (the Host, which a client spells as it
    likes, is not in it)."""

    def _get_version_parameter(self, request):
        return None

    def perform_content_negotiation(self, request, force=False):
        renderer, _ = super().perform_content_negotiation(request, force)
        return renderer, renderer.media_type

    @extend_schema(**SCHEMA_KWARGS)  # as drf-spectacular's own: not in the document itself
    def get(self, request, *args, **kwargs):
        cached = _DOCUMENTS.get(_document_key(request))
        if cached is None:
            # Not super().get(), which builds it under the `?lang=` the client names.
            return self._get_schema_response(request)
        content, headers = cached
        response = HttpResponse(content)
        for name, value in headers.items():
            response[name] = value
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and response.status_code == 200:
            response.render()
            headers = {name: response[name] for name in _DOCUMENT_HEADERS if name in response}
            _DOCUMENTS[_document_key(request)] = (response.content, headers)
            while len(_DOCUMENTS) > _DOCUMENTS_MAX:
                _DOCUMENTS.popitem(last=False)
        return response


@receiver(setting_changed, dispatch_uid="auth_service.schema.documents")
def _documents_forget(**kwargs) -> None:
    """A setting changed in place (tests do it) may change the document."""
    _DOCUMENTS.clear()


def _document_key(request) -> str:
    """What the document depends on: its format. Not the origin: the document names no server
    (SPECTACULAR_SETTINGS has no SERVERS), and ALLOWED_HOSTS lets a client spell one host in
    endless ways (letter case, any port, a trailing dot), each of which would build it again."""
    return request.accepted_renderer.media_type
