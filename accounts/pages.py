"""The server-rendered page a reset email links to: a plain form, no JavaScript."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.middleware.csrf import REASON_NO_CSRF_COOKIE
from django.shortcuts import render
from django.urls import reverse
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.exceptions import APIException, ValidationError

from accounts import services
from accounts.serializers import PASSWORD_MAX, TOKEN_MAX
from accounts.throttling import ResetIPThrottle

# Inline nothing and load nothing from elsewhere: the token in the URL must not leak.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

THROTTLED = "Too many attempts from your network. Try again in {seconds} seconds."
SESSION_EXPIRED = (
    "This form expired before it was sent, so nothing was changed. "
    "Enter the new password again and submit."
)


class ResetForm(forms.Form):
    token = forms.CharField(max_length=TOKEN_MAX, widget=forms.HiddenInput)
    password = forms.CharField(
        label="New password",
        max_length=PASSWORD_MAX,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_confirm = forms.CharField(
        label="Repeat the new password",
        max_length=PASSWORD_MAX,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        data = super().clean()
        if data.get("password") != data.get("password_confirm"):
            raise DjangoValidationError("The two passwords do not match.")
        return data


@never_cache
@require_http_methods(["GET", "POST"])
def reset_password_page(request):
    """GET shows the form (never uses the token up: mail scanners prefetch links); POST resets."""
    status, done, throttle = 200, False, ResetIPThrottle()
    if request.method == "POST":
        form = ResetForm(request.POST)
        # The form resets passwords like the API does, so it shares the API's per-IP budget.
        if not throttle.allow_request(request, None):
            form.is_valid()
            form.add_error(None, THROTTLED.format(seconds=throttle.wait()))
            status = 429
        elif form.is_valid():
            try:
                services.password_reset_confirm(
                    token=form.cleaned_data["token"], password=form.cleaned_data["password"]
                )
                done = True
            except ValidationError as error:
                for message in error.detail.get("password", []):
                    form.add_error("password", str(message))
                status = 400
            except APIException as error:
                form.add_error(None, str(error.detail))
                status = error.status_code
        else:
            status = 400
    else:
        form = ResetForm(initial={"token": request.GET.get("token", "")[:TOKEN_MAX]})
    response = _page(request, form, status=status, done=done)
    if status == 429:
        response["Retry-After"] = str(throttle.wait())
    return response


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: on the reset page, the form again with a fresh CSRF cookie.

    The form fails its CSRF check when the cookie is gone (the browser dropped it, or the page
    sat open past a restart of the browser); Django's own 403 page would leave the person
    stuck. A post from another site (wrong Origin or Referer) and every other page (the admin)
    keep Django's page.
    """
    if request.path != reverse("reset-password") or not _cookie_problem(reason):
        return django_csrf_failure(request, reason)
    form = ResetForm(initial={"token": request.POST.get("token", "")[:TOKEN_MAX]})
    # Rendering {% csrf_token %} issues a new cookie, so submitting again works.
    return _page(request, form, status=403, errors=[SESSION_EXPIRED])


def _cookie_problem(reason: str) -> bool:
    """A missing or stale cookie or form token, which sending the form again fixes."""
    return reason == REASON_NO_CSRF_COOKIE or reason.startswith("CSRF token")


def _page(request, form, *, status: int, done: bool = False, errors: list[str] | None = None):
    missing_token = not (form["token"].value() or "")
    errors = [*(errors or []), *form.non_field_errors()]
    response = render(
        request,
        "accounts/reset_password.html",
        {
            "form": form,
            "done": done,
            "missing_token": missing_token,
            "errors": errors,
            "referrer_policy": settings.SECURE_REFERRER_POLICY,
        },
        status=status,
    )
    response["Content-Security-Policy"] = PAGE_CSP
    response["Referrer-Policy"] = settings.SECURE_REFERRER_POLICY
    return response
