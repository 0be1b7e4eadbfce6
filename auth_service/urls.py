from django.contrib import admin
from django.urls import include, path
from django.views.decorators.cache import never_cache
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from accounts.admin import admin_login, admin_password_change
from accounts.pages import reset_password_page
from auth_service import health
from auth_service.schema import SchemaView

# The docs need no credentials, and ignore any: a stale token that Swagger UI keeps sending
# must not lock its user out of the docs with a 401. They answer GET and HEAD only: DRF's
# OPTIONS metadata has no template to render in the HTML pages.
PUBLIC = {
    "authentication_classes": [],
    "permission_classes": [AllowAny],
    "http_method_names": ["get", "head"],
}

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/v1/auth/", include("accounts.urls")),
    path("reset-password/", reset_password_page, name="reset-password"),
    path("api/schema/", SchemaView.as_view(**PUBLIC), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: the CSP allows no inline script.
    # Not cached: the script carries the visitor's CSRF token.
    path(
        "api/docs/",
        never_cache(SpectacularSwaggerSplitView.as_view(url_name="schema", **PUBLIC)),
        name="swagger-ui",
    ),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", **PUBLIC), name="redoc"),
    path("admin/login/", admin_login),
    path("admin/password_change/", admin_password_change),
    path("admin/", admin.site.urls),
]

handler400 = "auth_service.exceptions.bad_request"
handler403 = "auth_service.exceptions.permission_denied"
handler404 = "auth_service.exceptions.not_found"
handler500 = "auth_service.exceptions.server_error"
