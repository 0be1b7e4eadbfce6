"""Typed readers for configuration taken from the environment."""

import os
import re
from urllib.parse import parse_qs, quote, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# The largest value a C int holds: past it PostgreSQL, libpq and the socket calls refuse a
# number (or overflow) only at first use, far from the variable that set it.
INT_MAX = 2**31 - 1


def env_str(name: str, default: str | None = None) -> str:
    """Return the variable, the default, or fail loudly when neither exists."""
    value = os.environ.get(name)
    if value is not None and value != "":
        return value
    if default is None:
        raise ImproperlyConfigured(f"Set the {name} environment variable.")
    return default


def env_bool(name: str, default: bool = False) -> bool:
    """Parse the usual spellings of true and false; anything else is an error. Empty is unset,
    as for every other reader: a blank `SECURE_COOKIES=` must not turn a security default off."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = INT_MAX
) -> int:
    """Parse a whole number, at least ``minimum`` if given, at most ``maximum`` unless None (for
    a caller that bounds it with a message of its own)."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}.")
    return number


def env_seconds(name: str, default: float, *, maximum: float) -> float:
    """Parse a duration in seconds, fractions allowed; 0 or less is refused (it means no wait),
    and so is more than ``maximum`` ("inf" overflows the socket calls at first use)."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {value!r}.") from None
    if not seconds > 0:  # also refuses nan
        raise ImproperlyConfigured(f"{name} must be more than 0 seconds, not {value}.")
    if not seconds <= maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum:g} seconds, not {value}.")
    return seconds


def env_list(name: str, default: str = "") -> list[str]:
    """Parse a comma-separated list, dropping blanks."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_hosts(name: str, default: str = "") -> list[str]:
    """Comma-separated host names for ALLOWED_HOSTS (`api.example.com`, `.example.com` for its
    subdomains too, `[::1]`, `*`). Django compares them with the request's host stripped of its
    port, so an entry with a scheme, a port, a path or a final dot matches nothing, silently."""
    hosts = env_list(name, default)
    for host in hosts:
        after_address = host.partition("]")[2] if host.startswith("[") else host  # [::1]:80
        if "/" in host or host.endswith(".") or ":" in after_address:
            raise ImproperlyConfigured(
                f"{name} takes host names like api.example.com (no scheme, port or path); "
                f"got {host!r}."
            )
    return hosts


_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_PERIODS |= {"h": 3600, "hour": 3600, "d": 86400, "day": 86400}
# DRF reads only the first letter, so operators write plurals and the usual abbreviations too
# (30/minutes, 100/hr); accept those, and refuse words DRF would read as something unmeant.
_PERIODS |= {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
_PERIODS |= {"secs": 1, "mins": 60, "hr": 3600, "hrs": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """Split DRF rate syntax (``30/min``, ``5/hour``) into (requests, seconds); strict."""
    count, _, period = rate.strip().partition("/")
    if not count.isdigit() or int(count) < 1 or period not in _PERIODS:
        raise ImproperlyConfigured(
            f"{rate!r} is not a rate: use N/second, N/minute, N/hour or N/day (e.g. 30/min)."
        )
    return int(count), _PERIODS[period]


def env_rate(name: str, default: str) -> str:
    """A request rate in DRF syntax, checked at start-up so a typo fails loudly."""
    value = env_str(name, default)
    try:
        parse_rate(value)
    except ImproperlyConfigured as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None
    return value


REDIS_SCHEMES = ("redis", "rediss", "unix")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices`, in any letter case (returned as the choice is written)."""
    value = env_str(name, default).strip().upper()
    by_upper = {choice.upper(): choice for choice in choices}
    if value not in by_upper:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return by_upper[value]


def env_origins(name: str) -> list[str]:
    """Comma-separated web origins (`https://app.example.com`, a port allowed): a scheme and a
    host and nothing else, since a browser's Origin header never carries a path and an entry
    with one would silently match nothing. Lower-cased and without the scheme's own port, as
    browsers send them."""
    origins = []
    for origin in (entry.lower() for entry in env_list(name)):
        if not origin.isascii():
            # A browser sends an international host in its ASCII form; converting it here
            # could pick another IDNA variant than the browser's, and match nothing.
            raise ImproperlyConfigured(
                f"{name} takes hosts in the ASCII form browsers send (xn--bcher-kva.example "
                f"for bücher.example); got {origin!r}."
            )
        parsed = urlsplit(origin)
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.hostname
            or not _port_well_formed(parsed)
            or parsed.path
            or parsed.query
            or parsed.fragment
            or parsed.username is not None
            or origin != f"{parsed.scheme}://{parsed.netloc}"
        ):
            raise ImproperlyConfigured(
                f"{name} takes origins like https://app.example.com (scheme and host, a port "
                f"allowed, no path); got {origin!r}."
            )
        default_port = {"http": ":80", "https": ":443"}[parsed.scheme]
        origins.append(origin.removesuffix(default_port))
    return origins


def _port_well_formed(parsed) -> bool:
    """No port, or one as a browser writes it: digits within range, no leading zero (":0443"
    is never sent), not an empty `host:`."""
    try:
        port = parsed.port  # raises for letters, or past 65535
    except ValueError:
        return False
    if port is None:
        return not parsed.netloc.endswith(":")
    return port > 0 and parsed.netloc.endswith(f":{port}")


def env_contact(name: str) -> str:
    """An email address or an http(s) page where people reach support; empty if unset. Checked
    at start-up: a typo would otherwise send people from every notice to nowhere."""
    contact = env_str(name, "").strip()
    if not contact:
        return ""
    if "://" in contact:
        require_url_scheme(name, contact, ("https", "http"))
        return contact
    try:
        validate_email(contact)
    except ValidationError:
        raise ImproperlyConfigured(
            f"{name} must be an email address or a URL starting https://; got {contact!r}."
        ) from None
    return contact


def env_sender(name: str, default: str) -> str:
    """One email address, with or without a display name ("Acme Pay <no-reply@acme.example>").
    Checked at start-up: every email the worker sends comes from it, and anymail refuses a
    malformed one as an invalid address, which the worker cannot tell from a refused
    recipient: it would drop every reset email and delete every owed notice."""
    # Imported here: anymail's parser (the one the provider's backend runs on each send) loads
    # Django's mail package, which the settings need nowhere else.
    from anymail.exceptions import AnymailInvalidAddress
    from anymail.utils import parse_single_address

    value = env_str(name, default).strip()
    try:
        # A line break inside passes the parser (as header folding), but Django refuses such a
        # From header on every send (BadHeaderError), an error of our own to the worker: every
        # reset email would be given up at once.
        if value.splitlines() != [value]:
            raise AnymailInvalidAddress("line break")
        parse_single_address(value)
    except AnymailInvalidAddress:
        raise ImproperlyConfigured(
            f"{name} must be one email address, e.g. no-reply@example.com or "
            f'"Example, Inc." <no-reply@example.com> (quote a name with a comma); got {value!r}.'
        ) from None
    return value


def require_url_scheme(name: str, url: str, schemes: tuple[str, ...]) -> None:
    """Fail start-up on a URL without one of these schemes, or (but for unix:) without a host,
    with a port that is no port (the clients refuse it only at first use), or with whitespace:
    urlsplit passes a space pasted after the host into it, and from there into every link
    built on the URL and into ALLOWED_HOSTS."""
    parsed = urlsplit(url)
    if (
        parsed.scheme not in schemes
        or (parsed.scheme != "unix" and not parsed.hostname)
        or not _port_well_formed(parsed)
        or any(character.isspace() for character in url)
    ):
        shown = _without_credentials(url)
        # A password holding one of these leaves the URL without its host, though the URL
        # shown with it hidden looks right.
        hint = " (user and password hidden: percent-encode any of : / ? # @ or a space in them)"
        raise ImproperlyConfigured(
            f"{name} must be a URL starting {' or '.join(s + '://' for s in schemes)}, "
            f"with a host (a port, if any, of 1-65535) and no spaces; "
            f"got {shown!r}{hint if shown != url else ''}."
        )


def require_redis_database(name: str, url: str) -> None:
    """Fail start-up on a Redis URL whose database is not a number: redis-py ignores a path
    it cannot read (`/1O`, `/cache`) and uses database 0, shared with whatever else uses it."""
    parsed = urlsplit(url)
    if parsed.scheme not in REDIS_SCHEMES:
        return
    databases = parse_qs(parsed.query).get("db", [])
    if parsed.scheme != "unix":
        databases.append(parsed.path.strip("/") or "0")
    if not all(database.isascii() and database.isdigit() for database in databases):
        # Not repeated: in a malformed URL, what looks like the path may hold the password.
        raise ImproperlyConfigured(
            f"{name} must name its Redis database by number: redis://host:6379/0, or ?db=0 "
            "for a socket."
        )


# Up to the next "&": a "#" or a space in the value is part of it, as anywhere in a malformed URL.
_QUERY_CREDENTIALS = re.compile(r"([?&](?:username|password)=)[^&]*", re.IGNORECASE)


def _without_credentials(url: str) -> str:
    """The URL as a start-up error may show it: REDIS_URL and the broker's carry a password,
    and the error lands in the deploy's logs. The URL is malformed, so its parts cannot be
    trusted: everything up to the last "@" after the scheme is taken for credentials, and so is
    the value of a username= or password= in the query (redis-py takes them there too)."""
    url = _QUERY_CREDENTIALS.sub(r"\1***", url)
    before, at, host = url.rpartition("@")
    if not at:
        return url
    scheme, separator, _ = before.partition("://")
    return f"{scheme}{separator}***@{host}" if separator else f"***@{host}"


def kombu_socket_url(url: str) -> str:
    """A Redis socket's unix:// URL (redis-py's, REDIS_URL's) as kombu writes it, which knows no
    unix:// transport: unix://:pw@/run/redis.sock?db=3 is redis+socket://:pw@/run/redis.sock
    with virtual_host=3. A user and password given as ?username= and ?password= move into the
    URL, where kombu reads them."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    # The user too: a Redis 6 ACL user's password is refused as the default user's.
    username = unquote(parts.username or "") or query.get("username", [""])[0]
    password = unquote(parts.password or "") or query.get("password", [""])[0]
    userinfo = (
        f"{quote(username, safe='')}:{quote(password, safe='')}@" if username or password else ""
    )
    database = query.get("db", ["0"])[0]
    return f"redis+socket://{userinfo}{parts.path}?virtual_host={database}"
