"""The request body parser: DRF's JSON parser, hardened against pathological nesting."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser


class JSONParser(DRFJSONParser):
    """DRF's JSONParser, with too-deep nesting as a 400 ``parse_error`` instead of a 500.

    A couple of kilobytes of ``[[[[...`` exhaust Python's recursion limit inside ``json.load``,
    and DRF only turns ValueError into ParseError.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
