"""Plain HTTP to the API gets a JSON 308 to HTTPS, not Django's empty HTML 301.

Django's SecurityMiddleware (SECURE_SSL_REDIRECT) answers a request that did not come over
HTTPS with a 301 and an empty HTML body. Clients that follow a 301 turn a POST into a GET
without its body, so `POST http://.../login/` ended as a confusing 405. Under /api/ the answer
is a 308 (the same method and body, to the HTTPS URL) with a JSON body that says why, as for a
missing trailing slash. Pages (the admin, the reset page) keep the 301 browsers expect.
Placed before SecurityMiddleware, which `check --deploy` looks for by name, to rewrite its
answer.
"""

from django.conf import settings

from auth_service.browser_middleware import API_PREFIX
from auth_service.trailing_slash import json_redirect


class ApiHttpsRedirectMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code == 301 and settings.SECURE_SSL_REDIRECT and not request.is_secure():
            if request.path_info.startswith(API_PREFIX):
                location = response["Location"]
                response = json_redirect(
                    location, f"The API is served over HTTPS only: {location}", "https_required"
                )
                response["Cache-Control"] = "no-store"
            elif request.META.get("QUERY_STRING"):
                # A page's URL may carry a reset token (/reset-password/?token=...): browsers
                # keep a 301 indefinitely unless told not to, as for the trailing slash's.
                response["Cache-Control"] = "no-store"
        return response
