"""Settings for auth_service, read from the environment (see README "Environment")."""

import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from corsheaders.defaults import default_headers as cors_default_headers
from django.core.exceptions import ImproperlyConfigured

from auth_service.cpus import available_cpus
from auth_service.env import (
    REDIS_SCHEMES,
    env_bool,
    env_choice,
    env_contact,
    env_hosts,
    env_int,
    env_origins,
    env_rate,
    env_seconds,
    env_sender,
    env_str,
    kombu_socket_url,
    require_redis_database,
    require_url_scheme,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", default=False)
# Only local development may run without a real secret; production must set one.
SECRET_KEY = env_str("SECRET_KEY", "insecure-local-development-key" if DEBUG else None)

# PUBLIC_URL's host joins these below, where PUBLIC_URL is read.
ALLOWED_HOSTS = env_hosts("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
RENDER_EXTERNAL_HOSTNAME = env_str("RENDER_EXTERNAL_HOSTNAME", "")
if RENDER_EXTERNAL_HOSTNAME:
    ALLOWED_HOSTS.append(RENDER_EXTERNAL_HOSTNAME)
# Checked as CORS's are: Django compares them whole with the Origin header, so an entry with
# a path or a trailing slash would match nothing.
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS")

# Browser front ends on other origins that may call the API (none by default: same-origin and
# non-browser clients need nothing). Bearer tokens, not cookies: no credentials mode.
CORS_ALLOWED_ORIGINS = env_origins("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/v1/"
CORS_ALLOW_METHODS = ("GET", "HEAD", "OPTIONS", "POST")
# The library's list, a front end's own request id (auth_service/request_id.py), and W3C
# trace context, which a traced front end adds to every fetch: one header outside the list
# fails the preflight, and with it every call. The service reads none of them but the id.
CORS_ALLOW_HEADERS = (*cors_default_headers, "x-request-id", "traceparent", "tracestate", "baggage")
# Not safelisted for scripts: a front end needs them to wait out a 429 or 503, to tell which
# scheme a 401 asks for, and to quote a request's id in a report.
CORS_EXPOSE_HEADERS = ("Retry-After", "WWW-Authenticate", "X-Request-ID")
# A refused form post (the admin) gets the contract's JSON 403, as every other error does.
CSRF_FAILURE_VIEW = "auth_service.exceptions.csrf_failure"

INSTALLED_APPS = [
    # First: its changepassword and createsuperuser commands replace django.contrib.auth's.
    "accounts",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "corsheaders",  # its system checks; the middleware is auth_service.cors's
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "notifications",
]

MIDDLEWARE = [
    # Outermost: every answer, however early, has its Content-Length (CommonMiddleware sets it
    # only on those that pass back through it; gunicorn sends the others chunked).
    "auth_service.framing.ResponseFramingMiddleware",
    # Outside the rest: every answer, however early, carries the id its log lines carry.
    "auth_service.request_id.RequestIdMiddleware",
    "auth_service.priority.RequestPriorityMiddleware",
    # Outside everything that can answer early: its headers reach every response.
    "auth_service.security_headers.SecurityHeadersMiddleware",
    "auth_service.https_redirect.ApiHttpsRedirectMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Inside the HTTPS redirects (a preflight over plain HTTP gets them), outside the rest, so
    # that a front end's script can read every answer of the API's.
    "auth_service.cors.CorsMiddleware",
    "auth_service.static_files.StaticFilesMiddleware",  # WhiteNoise
    "auth_service.health.ProbeMiddleware",
    # Session, user and messages serve the browser pages (admin, reset page) and skip /api/:
    # auth_service/browser_middleware.py. CSRF stays as it is (cheap on exempt API views).
    "auth_service.browser_middleware.SessionMiddleware",
    # CommonMiddleware with a JSON 308 for an API path missing its trailing slash.
    "auth_service.trailing_slash.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "auth_service.browser_middleware.AuthenticationMiddleware",
    "auth_service.browser_middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auth_service.exceptions.JsonMethodNotAllowedMiddleware",
]

ROOT_URLCONF = "auth_service.urls"
WSGI_APPLICATION = "auth_service.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project-level overrides of third-party templates (the Redoc page without web fonts).
        "DIRS": [BASE_DIR / "auth_service" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves the files collected at build time; hashed names get a ten-year cache.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# An auth API takes small JSON bodies; refuse anything larger before parsing it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 64 * 1024, minimum=1)

# --- PostgreSQL -------------------------------------------------------------------------------

_database_url = env_str("DATABASE_URL", "")
if not _database_url:
    raise ImproperlyConfigured(
        "Set DATABASE_URL to a PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/auth_service."
    )
if not _database_url.startswith(("postgres://", "postgresql://")):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...).")
if any(character.isspace() for character in _database_url):
    # A space pasted along would be part of the database's (or the user's) name: every request
    # a 503, /healthz green. Not repeated, as below: the URL holds the password.
    raise ImproperlyConfigured(
        "DATABASE_URL has whitespace in it: remove it, or percent-encode it (%20) in a password."
    )
_conn_max_age = env_int("DB_CONN_MAX_AGE", 600, minimum=0)
try:
    DATABASES = {
        "default": dj_database_url.parse(
            _database_url, conn_max_age=_conn_max_age, conn_health_checks=True
        )
    }
except ValueError:
    # dj_database_url's own error names no variable. The URL is not repeated: it holds the
    # password, and this message lands in the deploy's logs.
    raise ImproperlyConfigured(
        "DATABASE_URL is not a valid URL: percent-encode any of : / ? # @ in the user name or "
        "password, and check the port is a number."
    ) from None
# The URL's own value of one of these would be replaced below without a word.
_overridden = {
    "connect_timeout": "DB_CONNECT_TIMEOUT",
    "tcp_user_timeout": "DB_TCP_USER_TIMEOUT",
    "keepalives": None,
    "keepalives_idle": None,
    "keepalives_interval": None,
    "keepalives_count": None,
}
for _option in sorted(DATABASES["default"].get("OPTIONS", {}).keys() & _overridden.keys()):
    _variable = _overridden[_option]
    raise ImproperlyConfigured(
        f"DATABASE_URL sets {_option}, which the service sets itself: remove it from the URL"
        + (f" and set {_variable} instead." if _variable else ".")
    )
for _parameter, _variable in (
    ("statement_timeout", "DB_STATEMENT_TIMEOUT"),
    ("lock_timeout", "DB_LOCK_TIMEOUT"),
):
    # Not deadlock_timeout, which the service leaves alone.
    if re.search(
        rf"(?<![a-z_]){_parameter}\b", DATABASES["default"].get("OPTIONS", {}).get("options", "")
    ):
        raise ImproperlyConfigured(
            f"DATABASE_URL sets {_parameter} in its options, which {_variable} sets: remove it "
            f"from the URL and set {_variable} instead."
        )
# Django would refuse a URL without a database (or a libpq service naming one) only at the
# first query: every request a 500.
if not DATABASES["default"]["NAME"] and "service" not in DATABASES["default"].get("OPTIONS", {}):
    raise ImproperlyConfigured(
        "DATABASE_URL names no database: end it with one, e.g. .../auth_service."
    )
# A database that does not answer must turn into a quick 503, not a hung worker.
# At most a day: the client's own wait (postgresql/deadline.py) overflows past about 24 days.
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
    "DB_CONNECT_TIMEOUT", 2, minimum=1, maximum=86400
)
# A lost network path resets nothing: a query on an open connection would wait on TCP
# retransmissions for many minutes. Data unacknowledged for DB_TCP_USER_TIMEOUT ms fails the
# connection instead (then the connect timeout applies), and keepalives find dead idle ones.
DATABASES["default"]["OPTIONS"].update(
    tcp_user_timeout=env_int("DB_TCP_USER_TIMEOUT", 3000, minimum=1),
    keepalives=1,
    keepalives_idle=30,
    keepalives_interval=5,
    keepalives_count=3,
)
# A PostgreSQL that is up but does not answer in time (a lock held by a migration or an open
# admin transaction, an overloaded server) would hold a request's thread until the client gave
# up. Each statement gets DB_STATEMENT_TIMEOUT ms, then the contract's 503. manage.py commands
# (migrations, the token sweep) default to none: they may rightly run longer.
_statement_timeout = env_int("DB_STATEMENT_TIMEOUT", 5000, minimum=0, maximum=86_400_000)
# A migration's ALTER that waits for a table lock (behind an open transaction) queues every
# request's query on that table behind it: manage.py gives its commands DB_LOCK_TIMEOUT ms to
# get a lock, then the command fails (and the deploy with it, to be retried) instead of
# turning the service's requests into 503s. The web and worker need none.
_lock_timeout = env_int("DB_LOCK_TIMEOUT", 0, minimum=0)
for _name, _value in (("statement_timeout", _statement_timeout), ("lock_timeout", _lock_timeout)):
    if _value > 0:
        _options = DATABASES["default"].get("OPTIONS", {}).get("options", "")
        DATABASES["default"]["OPTIONS"]["options"] = f"{_options} -c {_name}={_value}".strip()
# A server that accepts connections but does not run (its processes stopped, its storage
# stalled) trips none of the limits above: its kernel acknowledges everything. The client
# bounds every wait itself: the connect timeout for a new connection, the statement timeout
# and a second for a statement (none under manage.py); auth_service/postgresql/deadline.py.
DB_QUERY_DEADLINE = _statement_timeout / 1000 + 1 if _statement_timeout else None
# Django's backend, with a health check of reused connections that needs no round trip unless
# the connection sat idle (auth_service/postgresql/base.py).
DATABASES["default"]["ENGINE"] = "auth_service.postgresql"

# --- Redis: cache (throttle counters, reset tokens) and Celery broker -------------------------

# Required outside local development, as DATABASE_URL is: a forgotten one would point production
# at a Redis that is not there, and the login throttles fail open while Redis is unreachable.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0" if DEBUG else None)
REDIS_SOCKET_TIMEOUT = env_seconds("REDIS_SOCKET_TIMEOUT", 1, maximum=3600)
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "auth",
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
        },
    }
}

# --- Passwords --------------------------------------------------------------------------------

PASSWORD_HASHERS = [
    "accounts.hashers.Argon2idHasher",
    # Kept so hashes made before Argon2 still verify; they are upgraded on the next login.
    "accounts.hashers.LegacyPBKDF2Hasher",
]
# Passwords are hashed in a few threads per process (accounts/hash_pool.py), at most
# PASSWORD_HASH_SLOTS at once per instance: by default one per CPU the instance may use, its
# container's quota included (two at once on one CPU made every login wait for both, with no
# more logins a second; bench/README.md, 2026-12-02). The thread count bounds
# hashes, and so memory, per process. Request threads run WEB_REQUEST_NICENESS below the hash
# threads' PASSWORD_HASH_NICENESS, so a login burst gets the cores while cheap requests keep
# a share (auth_service/priority.py). Nice values are 0-19.
PASSWORD_HASH_THREADS = env_int("PASSWORD_HASH_THREADS", 2, minimum=1)
PASSWORD_HASH_SLOTS = env_int("PASSWORD_HASH_SLOTS", min(available_cpus(), 32), minimum=1)
# Hashes waiting or running per process beyond which one more is refused with a 503 at once:
# two of gunicorn's request threads stay free for cheap requests during a login burst.
PASSWORD_HASH_MAX_PENDING = env_int(
    "PASSWORD_HASH_MAX_PENDING", max(1, env_int("GUNICORN_THREADS", 16) - 2), minimum=1
)
PASSWORD_HASH_NICENESS = env_int("PASSWORD_HASH_NICENESS", 0)
WEB_REQUEST_NICENESS = env_int("WEB_REQUEST_NICENESS", 5)
# Each hash thread holds a descriptor per slot: the caps keep a worker well under the usual
# limit of 1,024 open files (and past one hash per core more only slow each other down).
if (
    not 1 <= PASSWORD_HASH_THREADS <= 16
    or not 1 <= PASSWORD_HASH_SLOTS <= 32
    or not 0 <= PASSWORD_HASH_NICENESS <= 19
    or not 0 <= WEB_REQUEST_NICENESS <= 19
):
    raise ImproperlyConfigured(
        "PASSWORD_HASH_THREADS must be 1-16, PASSWORD_HASH_SLOTS 1-32, "
        "PASSWORD_HASH_NICENESS and WEB_REQUEST_NICENESS 0-19."
    )
AUTH_PASSWORD_VALIDATORS = [
    {
        # The user's own attributes: Django's default names fields this model does not have.
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("email", "full_name")},
    },
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "accounts.validators.MaximumLengthValidator"},  # PASSWORD_MAX, as the fields
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "accounts.validators.PatternPasswordValidator"},
]

# --- REST framework, JWT, OpenAPI -------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["auth_service.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "auth_service.negotiation.JSONFirstNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "auth_service.exceptions.json_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# A spent refresh token used again after this many seconds revokes its login's whole chain of
# refresh tokens (accounts/tokens.py); sooner, it is a client retrying a refresh whose answer
# it lost, and is only refused.
REFRESH_REUSE_GRACE = timedelta(seconds=env_int("JWT_REFRESH_REUSE_GRACE", 30, minimum=0))

JWT_ACCESS_LIFETIME = env_int("JWT_ACCESS_LIFETIME", 300, minimum=1, maximum=None)
JWT_REFRESH_LIFETIME = env_int("JWT_REFRESH_LIFETIME", 7 * 24 * 3600, minimum=1, maximum=None)
# A token's expiry must be a date Python can hold: a lifetime reaching past the year 9999 (a
# value in micro- or milliseconds) made every login and refresh a 500 while /healthz stayed green.
JWT_LIFETIME_MAX = 100 * 365 * 24 * 3600
if max(JWT_ACCESS_LIFETIME, JWT_REFRESH_LIFETIME) > JWT_LIFETIME_MAX:
    raise ImproperlyConfigured(
        f"JWT_ACCESS_LIFETIME and JWT_REFRESH_LIFETIME are seconds, at most {JWT_LIFETIME_MAX} "
        "(100 years)."
    )
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=JWT_ACCESS_LIFETIME),
    # Rotated on every refresh, and refused once spent: accounts/tokens.py, not simplejwt's views.
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=JWT_REFRESH_LIFETIME),
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY", SECRET_KEY),
    "ALGORITHM": "HS256",
    "AUDIENCE": env_str("JWT_AUDIENCE", "auth_service"),
    "ISSUER": env_str("JWT_ISSUER", "auth_service"),
    "AUTH_HEADER_TYPES": ("Bearer",),
    # Access tokens carry a digest of the password hash, so they die with a password change.
    "CHECK_REVOKE_TOKEN": True,
    "CHECK_USER_IS_ACTIVE": True,
}
# Verified access tokens remembered per web worker (accounts/authentication.py); about 1.5 KiB
# each, so the default bounds the cache near 6 MiB.
ACCESS_TOKEN_CACHE_SIZE = env_int("ACCESS_TOKEN_CACHE_SIZE", 4096, minimum=1)

SPECTACULAR_SETTINGS = {
    "TITLE": "auth_service API",
    "DESCRIPTION": (
        "Accounts, JWT sessions and password reset for the platform. Errors are JSON: "
        '`{"detail", "code"}` for request errors, `{"field": ["..."]}` for validation.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    # No badge from the public validator: it would send the schema's URL to a third party.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "auth_service.schema.document_common_errors",
        # After the common errors: their responses carry the headers too.
        "auth_service.schema.document_response_headers",
        "auth_service.schema.document_password_rules",
    ],
}

# --- Abuse protection: rate limits and the client's address ----------------------------------

# Requests per client IP and per email, in DRF rate syntax (N/second|minute|hour|day). Counters
# live in Redis (accounts/throttling.py), shared by every worker and instance.
THROTTLE_RATES = {
    "login_ip": env_rate("THROTTLE_LOGIN_IP", "30/min"),
    "login_email": env_rate("THROTTLE_LOGIN_EMAIL", "5/min"),
    "reset_ip": env_rate("THROTTLE_RESET_IP", "20/hour"),
    "reset_email": env_rate("THROTTLE_RESET_EMAIL", "5/hour"),
    "password_change": env_rate("THROTTLE_PASSWORD_CHANGE", "5/min"),
    # Registration answers "already exists" (the contract's 400), so unlimited it would let
    # anyone test emails for accounts at the hasher's speed.
    "register_ip": env_rate("THROTTLE_REGISTER_IP", "20/hour"),
}
# How many proxies append to X-Forwarded-For in front of the app; the client is the entry that
# many places from the right. 0 means no proxy: use the socket's address. On Render two do
# (Cloudflare's edge appends the client, Render's proxy appends the edge), and Render sets
# RENDER=true in every service's environment.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 2 if env_bool("RENDER") else 0, minimum=0)
# Headers captured on Render show both "client, edge" and "client, edge, 10.x.x.x": private
# addresses at the right end are Render's internal hops, dropped before counting. Off elsewhere,
# where a client on a private network could otherwise append its own entries.
TRUSTED_PROXY_SKIP_PRIVATE = env_bool("TRUSTED_PROXY_SKIP_PRIVATE", default=env_bool("RENDER"))

# --- Security (production defaults; DEBUG relaxes only what local HTTP needs) -----------------

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Platform health checks reach the process directly over HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
# Only the origin, never a path. Not no-referrer site-wide: under it browsers send
# `Origin: null` with form posts, and the admin login's CSRF check refuses those. The reset
# page, whose URL carries a token, sends no-referrer itself (accounts/pages.py).
SECURE_REFERRER_POLICY = "strict-origin"
# Cookies (admin session and its CSRF token) only over HTTPS, except on plain-HTTP local setups
# such as docker compose.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=not DEBUG)
# Sessions are the admin's alone (the API's are tokens). Django's two weeks would leave a staff
# session on a lost or shared machine open for days: it ends ADMIN_SESSION_LIFETIME seconds
# after sign-in, and its cookie with the browser.
SESSION_COOKIE_AGE = env_int("ADMIN_SESSION_LIFETIME", 8 * 3600, minimum=60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Where a staff sign-in lands when its `next` is missing or points off the site (Django's
# default, /accounts/profile/, is no page here).
LOGIN_REDIRECT_URL = "admin:index"
X_FRAME_OPTIONS = "DENY"

# --- Logging ----------------------------------------------------------------------------------

# Plain text while developing, one JSON object per line in production (stdout, for the platform).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "auth_service.logging.JsonFormatter"}},
    "filters": {
        "drop_unavailable_traceback": {"()": "auth_service.logging.DropUnavailableTraceback"},
        "client_error_as_warning": {"()": "auth_service.logging.ClientErrorAsWarning"},
        "request_id": {"()": "auth_service.request_id.RequestIdFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "filters": ["request_id"],
            **({} if DEBUG else {"formatter": "json"}),
        }
    },
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", LOG_LEVELS)},
    "loggers": {
        # At DEBUG, Celery's pool logs every task's arguments ("TaskPool: Apply ... args"); the
        # reset task's nonce is one of them. Keep that logger at INFO whatever LOG_LEVEL says.
        "celery.pool": {"level": "INFO"},
        # A 503 outside the API's views (auth_service.exceptions.server_error).
        "django.request": {"filters": ["drop_unavailable_traceback"]},
        **{
            f"django.security.{name}": {"filters": ["client_error_as_warning"]}
            for name in (
                "DisallowedHost",
                "RequestDataTooBig",
                "TooManyFieldsSent",
                "TooManyFilesSent",
            )
        },
    },
}

# --- Password reset and email ------------------------------------------------------------------

PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 600, minimum=1)
# Links are built from configuration only, never from a request's Host header.
PUBLIC_URL = env_str(
    "PUBLIC_URL",
    os.environ.get("RENDER_EXTERNAL_URL") or ("http://localhost:8000" if DEBUG else None),
).rstrip("/")
PASSWORD_RESET_URL = env_str("PASSWORD_RESET_URL", f"{PUBLIC_URL}/reset-password/")
# Links in emails: a value without its scheme ("auth.example.com") would send broken ones.
require_url_scheme("PUBLIC_URL", PUBLIC_URL, ("http", "https"))
require_url_scheme("PASSWORD_RESET_URL", PASSWORD_RESET_URL, ("http", "https"))
if "?" in PUBLIC_URL or "#" in PUBLIC_URL or "@" in urlsplit(PUBLIC_URL).netloc:
    # The default reset link would be "https://auth.example.com?x=1/reset-password/", the home
    # page's. Not repeated: a user part may hold a password.
    raise ImproperlyConfigured(
        "PUBLIC_URL is the service's base URL, e.g. https://auth.example.com: no user, query "
        "or fragment."
    )
# Where the password-changed notice sends someone who did not change the password: an address
# or a page. Without one the notice can only say "contact support".
SUPPORT_CONTACT = env_contact("SUPPORT_CONTACT")
# The service's own public address is a host it serves: a custom domain needs setting once.
_public_host = urlsplit(PUBLIC_URL).hostname
_public_host = f"[{_public_host}]" if _public_host and ":" in _public_host else _public_host
if _public_host and _public_host not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_public_host)

DEFAULT_FROM_EMAIL = env_sender("DEFAULT_FROM_EMAIL", "auth_service <no-reply@localhost>")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
# An ESP through anymail: EMAIL_BACKEND=anymail.backends.<esp>.EmailBackend plus its settings
# as ANYMAIL_<SETTING> variables, e.g. ANYMAIL_POSTMARK_SERVER_TOKEN.
# "true" and "false" become booleans: anymail takes any non-empty string as true, and
# ANYMAIL_DEBUG_API_REQUESTS=false would print every API request, reset links included. Its
# switches (anymail 15) are read as DEBUG is, so "0", "no" or a typo cannot turn one on.
ANYMAIL_SWITCHES = (
    "DEBUG_API_REQUESTS",
    "IGNORE_UNSUPPORTED_FEATURES",
    "IGNORE_RECIPIENT_STATUS",
    "AUTO_CONFIRM_SNS_SUBSCRIPTIONS",
    "GENERATE_MESSAGE_ID",
    "PREVENT_HEADER_ENCODING_BUGS",
    "TRACK_INITIAL_OPEN_AS_OPENED",
    "USE_BULK_API",
    "WORKAROUND_DISPLAY_NAME_BUGS",
)
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): (
        env_bool(name)
        if name.endswith(ANYMAIL_SWITCHES) or value.strip().lower() in ("true", "false")
        else value
    )
    for name, value in os.environ.items()
    if name.startswith("ANYMAIL_") and value.strip()
}
# Each call to an HTTP-API provider (anymail's requests backends; not Amazon SES, which goes
# through boto3) waits at most this long to connect, and as long again to read (anymail's
# default is 30 s each): a slow provider must not stretch the retries past a link's life.
ANYMAIL["REQUESTS_TIMEOUT"] = EMAIL_TIMEOUT

# --- Celery (worker) --------------------------------------------------------------------------

# The worker's sweep (notifications/sweep.py) sends "password changed" notices whose message
# never reached the queue: every NOTICE_SWEEP_INTERVAL s, those older than NOTICE_SWEEP_AFTER s.
NOTICE_SWEEP_INTERVAL = env_int("NOTICE_SWEEP_INTERVAL", 60, minimum=1)
NOTICE_SWEEP_AFTER = env_int("NOTICE_SWEEP_AFTER", 120, minimum=0)
# At most this long a starting worker waits for the deploy's migrations (auth_service.celery).
WORKER_SCHEMA_WAIT = env_int("WORKER_SCHEMA_WAIT", 600, minimum=0)

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
# A URL without one of these schemes would fail only at first use, or make kombu pick some
# other transport. The broker may be RabbitMQ; the cache and reset tokens need Redis.
require_url_scheme("REDIS_URL", REDIS_URL, REDIS_SCHEMES)
require_url_scheme("CELERY_BROKER_URL", CELERY_BROKER_URL, (*REDIS_SCHEMES, "amqp", "amqps"))
require_redis_database("REDIS_URL", REDIS_URL)
require_redis_database("CELERY_BROKER_URL", CELERY_BROKER_URL)
if CELERY_BROKER_URL.startswith("unix://"):
    # kombu picks the transport named by a "redis+" prefix over the one configured (the stock
    # one, a new client per message): the socket URL goes without it, to a transport that reads
    # it whole, as kombu's does once past the prefix.
    CELERY_BROKER_URL = kombu_socket_url(CELERY_BROKER_URL).removeprefix("redis+")
    CELERY_BROKER_TRANSPORT = "auth_service.broker_transport:SocketTransport"
elif CELERY_BROKER_URL.startswith("redis://"):
    # kombu's Redis transport, minus a new client per message (auth_service/broker_transport.py).
    # Not for rediss://: kombu turns TLS on from that scheme name only when it picks the
    # transport itself.
    CELERY_BROKER_TRANSPORT = "auth_service.broker_transport:Transport"
# Task messages are checked before Celery reads them: one it cannot read would end the worker,
# and the restarted worker with it (auth_service/task_messages.py).
CELERY_WORKER_CONSUMER = "auth_service.task_messages:TaskConsumer"
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged only after it ran, and comes back if its worker dies mid-task.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Sending email waits on the network, not the CPU; Celery's default of one process per CPU the
# host reports (often far more than the container may use) costs ~80 MiB each.
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 2, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redelivery of a task whose worker vanished, well inside the reset token's lifetime.
    # Must exceed the longest retry countdown (1.5 x notifications.tasks.RETRY_MAX_DELAY,
    # 180 s) and a send: a task waiting to retry is otherwise delivered again meanwhile, and
    # the copies, due at the same moment, can each send the email before either marks it sent
    # (`check --deploy` warns, notifications.W001). Tests of redelivery set a few seconds.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 300, minimum=1),
    # Look for such abandoned tasks every 10 s (kombu's default scans only every 100 s), so a
    # redelivery comes at most 10 s after the visibility timeout.
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
    # Publishing opens the connection once, no retries: kombu otherwise sleeps 2 s between
    # attempts at a broker that refuses connections, and a forgot would wait that long for its
    # 503. The worker's own reconnecting follows broker_connection_max_retries, not this.
    "max_retries": 0,
}
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_SOCKET_TIMEOUT
# Publishing from a request must fail fast (503) rather than hang when Redis is gone. redis-py
# already reconnects a pooled connection that died with a Redis restart; a kombu retry on top
# only multiplies the socket timeout when Redis hangs (two retries: 5 s instead of 1 s).
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The worker logs through LOGGING above (JSON in production) instead of Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Task events would carry task arguments to any monitor listening on the broker; keep them off.
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SEND_SENT_EVENT = False
