"""The server-rendered page a reset email links to: a plain form, no JavaScript."""

import logging

from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import APIException, ValidationError

from accounts import services
from accounts.throttling import RedisOutage, ResetIPThrottle, refund_hits_if_nothing_hashed
from accounts.tokens import TOKEN_MAX
from accounts.validators import PASSWORD_MAX
from auth_service.exceptions import (
    HashingBusy,
    ResetTokenInvalid,
    allow_methods,
    is_unavailable,
    log_hashing_busy,
    log_unavailable,
)

# Inline nothing and load nothing from elsewhere: the token in the URL must not leak.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Not even the origin: the page's URL carries the token. The rest of the site keeps
# settings.SECURE_REFERRER_POLICY (strict-origin), which the admin's CSRF check needs.
PAGE_REFERRER_POLICY = "no-referrer"

THROTTLED = "Too many attempts from your network. Try again in {seconds} seconds."
CROSS_SITE = "This form can only be sent from its own page. Open the link from the email again."
# A second submit of a form whose first one worked (a double click) lands here too.
LINK_INVALID = (
    "This link is invalid, expired or already used. If you just sent this form, your new "
    "password may already be set: try signing in with it. Otherwise ask for a new link."
)
LINK_DEAD = (
    "This link is invalid, expired or already used: each link works once, for a limited time. "
    "Ask for a new one in the app; this form cannot set a password with it."
)
UNAVAILABLE = "The service is briefly unavailable; nothing was changed. Try again in a minute."


class TokenField(forms.CharField):
    """The hidden token: whatever came in is judged by the reset itself, so a mangled link
    (far too long, a NUL) gets the page's invalid-link message, not a silent hidden-field error."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs):
        # Not stripped, as the API's token field and the dead-link check on opening take it:
        # stripped, a padded token the page called dead would work after all, and a blank one
        # would fail as a required field, with no message on the page.
        super().__init__(strip=False, **kwargs)
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]


class ResetForm(forms.Form):
    token = TokenField()
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


def _cross_site(request) -> bool:
    """Whether another site's page made the browser send this post. Browsers say so in
    Sec-Fetch-Site; older ones only by an Origin other than this service's (this page's own
    form, under no-referrer, arrives with `Origin: null`)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin not in (None, "null", f"{request.scheme}://{request.get_host()}")


# No CSRF check: under no-referrer browsers post the form with `Origin: null` and no Referer,
# which Django's check refuses. The form needs none to protect a password: no cookie or session
# gives it any power, and its only credential is the single-use reset token inside it, which a
# cross-site attacker cannot know. Posts other sites' pages make are still refused, uncounted:
# counted, any page could spend its visitors' per-IP reset budget. Framing stays blocked by
# PAGE_CSP's frame-ancestors and X-Frame-Options.
@csrf_exempt
@never_cache
# HEAD for link checkers; it is answered like GET.
@allow_methods("GET", "HEAD", "POST")
def reset_password_page(request):
    """GET and HEAD show the form, saying at once if the link no longer works (never using the
    token up: mail scanners prefetch links); POST resets."""
    status, done, dead, busy, throttle = 200, False, False, False, ResetIPThrottle()
    if request.method == "POST":
        form = ResetForm(request.POST)
        # The form resets passwords like the API does, so it shares the API's per-IP budget.
        if _cross_site(request):
            form.is_valid()
            form.add_error(None, CROSS_SITE)
            status = 403
        elif not throttle.allow_request(request, None):
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
            except ResetTokenInvalid as error:
                form.add_error(None, LINK_INVALID)
                status = error.status_code
            except APIException as error:
                form.add_error(None, str(error.detail))
                status = error.status_code
                busy = isinstance(error, HashingBusy)
                if busy:  # turned away before hashing: its retry must not find the budget spent
                    refund_hits_if_nothing_hashed(request)
            except Exception as error:
                if not is_unavailable(error):
                    raise
                # What the API answers with a 503 JSON body, the page says in words.
                log_unavailable(error)
                form.add_error(None, UNAVAILABLE)
                status = 503
        else:
            status = 400
    else:
        token = request.GET.get("token", "")[:TOKEN_MAX]
        form = ResetForm(initial={"token": token})
        # 200 either way, as Django's own reset view answers: the page is there, the link is not.
        dead = bool(token) and not _link_alive(token)
    response = _page(request, form, status=status, done=done, dead=dead)
    if status == 429:
        response["Retry-After"] = str(throttle.wait())
    if busy:
        response["Retry-After"] = str(HashingBusy.wait)
        log_hashing_busy(response)
    return response


# Opening the page is not rate-limited and mail scanners open links too: while Redis is known
# to be down, the page shows its form at once rather than wait a socket timeout each time.
link_check_outage = RedisOutage(
    "Reset page: dead links are told only once their form is sent: Redis is unreachable (%s).",
    level=logging.WARNING,
)


def _link_alive(token: str) -> bool:
    """Whether the link may still work; when Redis cannot say, the form is shown and its post
    gets the answer."""
    if link_check_outage.ongoing():
        return True
    try:
        return services.reset_link_alive(token=token)
    except Exception as error:
        if not is_unavailable(error):
            raise
        link_check_outage.record(error)
        return True


def _page(request, form, *, status: int, done: bool = False, dead: bool = False):
    missing_token = not (form["token"].value() or "")
    response = render(
        request,
        "accounts/reset_password.html",
        {
            "form": form,
            "done": done,
            "missing_token": missing_token,
            # A dead link keeps its form (the contract's page has one): the warning comes first.
            "errors": [LINK_DEAD] if dead else form.non_field_errors(),
            "referrer_policy": PAGE_REFERRER_POLICY,
        },
        status=status,
    )
    response["Content-Security-Policy"] = PAGE_CSP
    response["Referrer-Policy"] = PAGE_REFERRER_POLICY
    return response
