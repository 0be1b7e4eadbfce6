"""The reference endpoint: a plain Django project answering one JSON view, nothing of ours.

The performance targets were set on a machine where this (Django's default project
middleware, `gunicorn --workers 2 --worker-class sync`, no access log) served about 6,000
requests/s (REFERENCE_RPS in bench/run.py). bench/run.py measures it beside the ceiling, so
the absolute targets (me and refresh req/s, forgot p95) can also be read at the speed of the
targets' machine: these VMs run at anything from half to the full speed of that machine
within one day.
"""

from django.conf import settings

# What `django-admin startproject` writes, less what needs a database (no view here uses one).
settings.configure(
    DEBUG=False,
    SECRET_KEY="reference-endpoint-only-" + "0" * 40,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
    ],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    USE_TZ=True,
)

import django  # noqa: E402

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def healthz(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [path("healthz", healthz)]
application = get_wsgi_application()
