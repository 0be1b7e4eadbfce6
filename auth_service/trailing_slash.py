"""Django's CommonMiddleware, with an API client's missing trailing slash answered in JSON.

Django answers a path that resolves only with a slash appended by a 301 to it, with an empty
HTML body. Clients turn a POST into a GET when they follow a 301, so a `POST .../login` ends as
a 405 that hides the actual mistake. Under /api/ the answer is instead a 308 (clients repeat the
same method and body) with a JSON body naming the right URL. Other paths (admin, the reset
page) keep Django's behaviour.
"""

import json

from django.http.response import HttpResponseRedirectBase
from django.middleware import common

from auth_service.browser_middleware import API_PREFIX
from auth_service.exceptions import COMPACT_JSON


class JsonPermanentRedirect(HttpResponseRedirectBase):
    status_code = 308


def json_redirect(location: str, detail: str, code: str) -> JsonPermanentRedirect:
    """A 308 whose body says, in the contract's error shape, why the client was moved."""
    return JsonPermanentRedirect(
        location,
        content=json.dumps({"detail": detail, "code": code}, **COMPACT_JSON),
        content_type="application/json",
    )


class CommonMiddleware(common.CommonMiddleware):
    def process_response(self, request, response):
        if (
            response.status_code == 404
            and request.path_info.startswith(API_PREFIX)
            and self.should_redirect_with_slash(request)
        ):
            response = trailing_slash_redirect(request)
        response = super().process_response(request, response)
        if response.status_code in (301, 308) and request.META.get("QUERY_STRING"):
            # The URL may carry a reset token (/reset-password?token=...): browsers keep a 301
            # indefinitely unless told not to.
            response["Cache-Control"] = "no-store"
        return response


def trailing_slash_redirect(request) -> JsonPermanentRedirect:
    """308 to the same URL with the slash (query string kept), and a JSON body that says so."""
    # Not Django's get_full_path_with_slash: under DEBUG it raises for a POST, which a 308 keeps.
    return json_redirect(
        request.get_full_path(force_append_slash=True),
        f"This endpoint's URL ends with a slash: {request.path}/",
        "trailing_slash_required",
    )
