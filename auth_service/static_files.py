"""WhiteNoise, answering a method other than GET or HEAD on a static file with the contract's
JSON 405, and a range past the file's end with a JSON 416 (WhiteNoise's own have empty
bodies)."""

from whitenoise.middleware import WhiteNoiseMiddleware

from auth_service.exceptions import error_body, method_not_allowed

READ_METHODS = ("GET", "HEAD")


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    @staticmethod
    def serve(static_file, request):
        if request.method not in READ_METHODS:
            return method_not_allowed(request.method, READ_METHODS)
        response = WhiteNoiseMiddleware.serve(static_file, request)
        if response.status_code == 416 and request.method == "GET":
            refused = error_body(
                "The requested range is not satisfiable.", "range_not_satisfiable", 416
            )
            refused["Content-Range"] = response["Content-Range"]  # bytes */<the file's length>
            return refused
        return response
