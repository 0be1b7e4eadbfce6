"""WhiteNoise, answering a method other than GET or HEAD on a static file with the contract's
JSON 405 (WhiteNoise's own has an empty body)."""

from whitenoise.middleware import WhiteNoiseMiddleware

from auth_service.exceptions import method_not_allowed

READ_METHODS = ("GET", "HEAD")


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    @staticmethod
    def serve(static_file, request):
        if request.method not in READ_METHODS:
            return method_not_allowed(request.method, READ_METHODS)
        return WhiteNoiseMiddleware.serve(static_file, request)
