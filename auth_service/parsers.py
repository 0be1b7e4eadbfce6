"""The request body parser: DRF's JSON parser, hardened against pathological input."""

import re

from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import JSONParser as DRFJSONParser

# JSON may escape half of a UTF-16 pair alone ("\ud800"); Python decodes it to a string that
# cannot be encoded as UTF-8, so every later step (HMAC, hashing, PostgreSQL, Redis) would fail.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_lone_surrogate(value) -> bool:
    if isinstance(value, str):
        return not value.isascii() and _LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_lone_surrogate(k) or _holds_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_lone_surrogate(item) for item in value)
    return False


def content_coding_taken(request) -> bool:
    """Whether the body comes without a content coding (or as "identity"): the only way this
    service reads one."""
    return request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower() in ("", "identity")


class JSONParser(DRFJSONParser):
    """DRF's JSONParser, with too-deep nesting and text that is not Unicode as a 400
    ``parse_error`` instead of a 500.

    A couple of kilobytes of ``[[[[...`` exhaust Python's recursion limit inside ``json.load``,
    and DRF only turns ValueError into ParseError.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        if request is not None and not content_coding_taken(request):
            # Read as JSON, a compressed body would be a confusing parse error (RFC 9110:
            # 415 for a content coding the server does not take).
            coding = request.META["HTTP_CONTENT_ENCODING"]
            raise UnsupportedMediaType(
                media_type,
                detail=f"Content-Encoding {coding!r} is not supported: send the body uncompressed.",
            )
        # RFC 8259: JSON between systems is UTF-8, and a charset parameter has no effect. DRF
        # decodes by it, so a client labelling its UTF-8 body latin-1 stored "ZoÃ«" and a
        # password that no correctly labelled request could sign in with.
        parser_context = {**(parser_context or {}), "encoding": "utf-8"}
        try:
            data = super().parse(stream, media_type, parser_context)
            if _holds_lone_surrogate(data):
                raise ParseError(
                    "JSON parse error - a \\u escape holds half of a UTF-16 surrogate pair."
                )
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        except ParseError as error:
            if "integer string conversion" in str(error.detail):
                # Python's message names sys.set_int_max_str_digits(): not the client's business.
                raise ParseError("JSON parse error - a number has too many digits.") from None
            raise
        return data
