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


def uncollected_warning() -> str | None:
    """Why the pages would fail, when the static files were never collected: with DEBUG off,
    a page linking a stylesheet or script (the reset page, the API docs) answers 500 until the
    manifest of hashed names exists. The build collects them; a server started by hand may not."""
    from django.apps import apps
    from django.conf import settings

    # gunicorn.conf.py also serves apps without static files (bench/reference_app.py).
    if settings.DEBUG or not apps.is_installed("django.contrib.staticfiles"):
        return None
    from django.contrib.staticfiles.storage import staticfiles_storage

    manifest = getattr(staticfiles_storage, "manifest_name", None)
    if manifest is None or staticfiles_storage.exists(manifest):
        return None
    return (
        f"Static files are not collected in {settings.STATIC_ROOT}: the reset page and the API "
        "docs answer 500 until `python manage.py collectstatic --noinput` runs."
    )
