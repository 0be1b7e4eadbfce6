"""Rate limits for login, registration, password change and password reset, counted in Redis
across every worker and instance.

Each limit holds in every rolling period per subject (client IP, email, user), counted atomically
in Redis (auth_service.counters). Subjects are keyed by an HMAC, so Redis never holds an email
or an address in clear. When Redis is unreachable the limits fail open: availability of login
matters more than throttling for the minutes Redis is gone, and the outage is logged once a
minute. Forgot's do not (RateThrottle.fails_open).
"""

import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Collection, Iterator

from django.conf import settings
from django.utils.crypto import salted_hmac
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts import hash_pool
from accounts.managers import normalize_email
from auth_service import counters
from auth_service.client_ip import client_ip
from auth_service.env import parse_rate
from auth_service.exceptions import HashingBusy, is_unavailable
from auth_service.parsers import content_coding_taken

logger = logging.getLogger(__name__)


class RedisOutage:
    """Per-process memory of a Redis failure: skip Redis for a while, log once a minute."""

    retry_after = 5.0
    log_interval = 60.0

    def __init__(
        self,
        message: str = (
            "Rate limits are not enforced: Redis is unreachable (%s). Requests are let through."
        ),
        level: int = logging.ERROR,
    ) -> None:
        self.message, self.level = message, level
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._skip_until = 0.0
        self._logged_at = float("-inf")

    def ongoing(self) -> bool:
        # While Redis is known to be down, don't make every request wait for a socket timeout.
        return time.monotonic() < self._skip_until

    def record(self, error: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self._skip_until = now + self.retry_after
            if now - self._logged_at < self.log_interval:
                return
            self._logged_at = now
        logger.log(self.level, self.message, type(error).__name__)


outage = RedisOutage()


class RateThrottle(BaseThrottle):
    """A rolling-window limit from ``settings.THROTTLE_RATES[scope]`` per subject."""

    scope: str
    # Whether requests go through unlimited while Redis cannot count them. A flow that needs
    # Redis for its own work gains no availability from that; it would only open between a
    # failure and Redis's return to a flood (of reset emails, say) that the limit never sees.
    fails_open = True

    def __init__(self) -> None:
        self.limit, self.period = parse_rate(settings.THROTTLE_RATES[self.scope])
        self.seconds_left: int | None = None

    def get_subject(self, request: Request) -> str | None:
        """What the limit counts (an IP, an email); None exempts the request."""
        raise NotImplementedError

    def hit(self, request: Request) -> counters.Hit | None:
        """The counter this request counts against, or None if it is exempt."""
        subject = self.get_subject(request)
        if not subject:
            return None
        digest = salted_hmac(self.scope, subject, algorithm="sha256").hexdigest()[:32]
        return counters.Hit(f"throttle:{self.scope}:{digest}", self.limit, self.period)

    def allow_request(self, request: Request, view) -> bool:
        return not throttles_wait([self], request)

    def wait(self) -> int | None:
        return self.seconds_left


# Where throttles_wait notes, on the request, the hits it recorded (for refund_hits).
_COUNTED = "_throttle_hits_counted"


def throttles_wait(throttles: list[RateThrottle], request: Request) -> int:
    """Count the request against every throttle if all allow it, in one Redis round trip; the
    longest wait among those that refuse it, 0 if all allow it. When Redis cannot count it,
    0, or the RedisError if any of the throttles does not fail open."""
    hits = {throttle: throttle.hit(request) for throttle in throttles}
    hits = {throttle: hit for throttle, hit in hits.items() if hit}
    if not hits:
        return 0
    # One that must not fail open asks Redis even while an outage is known: it is counted
    # again as soon as Redis answers.
    fails_open = all(throttle.fails_open for throttle in hits)
    if fails_open and outage.ongoing():
        return 0
    member = counters.new_member()
    try:
        waits = counters.rolling_hits(list(hits.values()), member)
    except RedisError as error:
        outage.record(error)
        if not fails_open:
            raise
        return 0
    for throttle, wait in zip(hits, waits, strict=True):
        throttle.seconds_left = wait or None
    if not any(waits):
        setattr(request, _COUNTED, (list(hits.values()), member))
    return max(waits)


def refund_hits(request: Request, scopes: Collection[str] | None = None) -> None:
    """Take back what throttles_wait counted for this request, as if it had not been sent;
    with `scopes`, only the hits of those throttles."""
    counted = getattr(request, _COUNTED, None)
    if counted is None:
        return
    setattr(request, _COUNTED, None)
    hits, member = counted
    if scopes is not None:
        hits = [hit for hit in hits if hit.key.split(":", 2)[1] in scopes]
    try:
        counters.refund(hits, member)
    except RedisError as error:
        # The hits age out with their period, as any other.
        logger.warning(
            "throttle hits of a refused request not taken back: %s", type(error).__name__
        )


def refund_hits_if_nothing_hashed(request) -> None:
    """After a HashingBusy refusal: the hits go back only when no password of the request was
    hashed yet. A password change refused at its new password's hash has already said that the
    current one was right (a wrong one is a 400): a free retry would be a free guess."""
    if not hash_pool.hashed_in_request():
        refund_hits(request)


@contextlib.contextmanager
def refunded_if_busy(request) -> Iterator[None]:
    """Around a view outside DRF (the admin's forms): a HashingBusy refusal before any hash
    refunds the hits."""
    try:
        yield
    except HashingBusy:
        refund_hits_if_nothing_hashed(request)
        raise


class OneRoundTripThrottles:
    """View mixin: the view's throttles (all RateThrottles) are checked in one Redis call.

    DRF's own check asks each throttle in turn, a round trip each; the outcome is the same:
    a refused request waits for the longest. Unlike DRF's, a request one limit refuses is
    counted under none of the others.
    """

    def check_throttles(self, request: Request) -> None:
        # DRF checks throttles before the method: a GET to login would spend the login budget
        # and turn its 405 into a 429. Only requests the view does work for count.
        handled = request.method != "OPTIONS" and hasattr(self, request.method.lower())
        # Nor does a body the view cannot parse (a 415: a type or a content coding it does not
        # take), or one without a Content-Type (read as empty, a 400): any page can post
        # text/plain, a form, or with fetch's no-cors mode no type at all, but not JSON, and
        # would otherwise spend its visitors' budgets.
        if handled:
            parsers = self.get_parsers()
            handled = (
                bool(request.content_type)
                and content_coding_taken(request)
                and self.get_content_negotiator().select_parser(request, parsers) is not None
            )
        if not handled:
            return
        wait = throttles_wait(self.get_throttles(), request)
        if wait:
            self.throttled(request, wait)

    # The throttles whose hits a 503 for a dependency that cannot serve (the database, Redis,
    # the broker) takes back: only for a view where every such 503 tells nothing, answered at
    # the same points whatever the request names. Per-address limits keep theirs, so that an
    # outage does not open the view to a flood that each time waits on the failing dependency.
    refunded_when_unavailable: tuple[type[RateThrottle], ...] = ()

    def handle_exception(self, exc: Exception):
        # A request refused before its password was hashed (the hash pool full) checked
        # nothing and told nothing: it must not spend the budget its retry needs.
        if isinstance(exc, HashingBusy):
            refund_hits_if_nothing_hashed(self.request)
        elif self.refunded_when_unavailable and is_unavailable(exc):
            refund_hits(self.request, {t.scope for t in self.refunded_when_unavailable})
        return super().handle_exception(exc)


class ClientIPThrottle(RateThrottle):
    """Counts per client IP; IPv6 clients per /64, the block one subscriber usually holds."""

    def get_subject(self, request: Request) -> str | None:
        address = client_ip(request)
        if not address:
            return None
        ip = ipaddress.ip_address(address)
        if ip.version == 6:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return address


class EmailThrottle(RateThrottle):
    """Counts per email sent in the body, normalized, whether or not an account has it."""

    def get_subject(self, request: Request) -> str | None:
        data = request.data
        email = data.get("email") if isinstance(data, dict) else None
        return normalize_email(email) if isinstance(email, str) else None


class LoginIPThrottle(ClientIPThrottle):
    scope = "login_ip"


class LoginEmailThrottle(EmailThrottle):
    scope = "login_email"


class AdminLoginEmailThrottle(LoginEmailThrottle):
    """The same per-email budget as the API's login, for the admin's sign-in form."""

    def get_subject(self, request) -> str | None:
        email = request.POST.get("username")
        return normalize_email(_as_signed_in_with(email)) if email else None


def _as_signed_in_with(username: str) -> str:
    """The username as the admin's sign-in form hands it to authenticate(): stripped, and NFKC
    unless longer than the form's limit (Django leaves what it would refuse as it is). Counted
    in any other form, the spellings that form makes one address would each get a budget of
    their own: full-width letters ("ａdmin@…"), or a domain padded past the limit with
    characters NFKC keeps and IDNA drops."""
    from django.contrib.auth.forms import AuthenticationForm  # needs the apps loaded

    return AuthenticationForm().fields["username"].to_python(username)


class RegisterIPThrottle(ClientIPThrottle):
    """Registrations per client IP, whatever their outcome: each answer says whether the email
    already has an account, and each costs a password hash."""

    scope = "register_ip"


class ResetIPThrottle(ClientIPThrottle):
    """Shared by forgot and reset: one budget per IP for the whole reset flow."""

    scope = "reset_ip"


class ResetEmailThrottle(EmailThrottle):
    """Forgot's per-email limit, the one that keeps a mailbox from being flooded. Forgot cannot
    send a link without Redis, so the limit does not fail open (with it, neither do the other
    limits of a forgot)."""

    scope = "reset_email"
    fails_open = False


class PasswordChangeThrottle(RateThrottle):
    """Counts per signed-in user. Each change checks the current password: without a limit,
    someone holding a stolen session could guess it at the hasher's speed and take the
    account over."""

    scope = "password_change"

    def get_subject(self, request: Request) -> str | None:
        user = request.user
        return str(user.pk) if user is not None and user.is_authenticated else None
