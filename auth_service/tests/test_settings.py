"""Configuration comes from the environment, and bad configuration stops the process loudly."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

BASE_ENV = {
    "PATH": os.environ["PATH"],
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/auth_service",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "SECRET_KEY": "x" * 50,
    "PUBLIC_URL": "https://auth.example.com",
}


def load_settings(show: str = "s.DEBUG", **env):
    """Import the settings in a fresh interpreter with exactly this environment; print `show`."""
    merged = {key: value for key, value in {**BASE_ENV, **env}.items() if value is not None}
    return subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", f"import auth_service.settings as s; print({show})"],
        env=merged,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=False,
    )


def test_defaults_are_production_defaults():
    result = load_settings()

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": None}, "Set DATABASE_URL to a PostgreSQL URL"),
        ({"DATABASE_URL": "sqlite:///db.sqlite3"}, "DATABASE_URL must point at PostgreSQL"),
        # a password with "/" or "#" not percent-encoded, a mistyped port: dj_database_url's
        # own error names no variable
        ({"DATABASE_URL": "postgres://u:pa/ss@db.example:5432/app"}, "DATABASE_URL is not a"),
        ({"DATABASE_URL": "postgres://u@db.example:54x2/app"}, "DATABASE_URL is not a valid"),
        # Django would refuse it only at the first query, each request a 500 until then
        ({"DATABASE_URL": "postgres://u@db.example:5432"}, "DATABASE_URL names no database"),
        # a space pasted along would be part of the database's name: every request a 503 while
        # /healthz stays green, and the log names no cause
        ({"DATABASE_URL": "postgres://u@db.example:5432/app "}, "DATABASE_URL has whitespace"),
        ({"SECRET_KEY": None}, "Set the SECRET_KEY environment variable"),
        ({"REDIS_URL": None}, "Set the REDIS_URL environment variable"),
        ({"PUBLIC_URL": None}, "Set the PUBLIC_URL environment variable"),
        ({"DEBUG": "maybe"}, "DEBUG must be true or false"),
        # 0 would make every reset token, or every session, expire as it is made
        ({"PASSWORD_RESET_TIMEOUT": "0"}, "PASSWORD_RESET_TIMEOUT must be at least 1, not 0."),
        ({"JWT_ACCESS_LIFETIME": "-5"}, "JWT_ACCESS_LIFETIME must be at least 1, not -5."),
        ({"ADMIN_SESSION_LIFETIME": "0"}, "ADMIN_SESSION_LIFETIME must be at least 60, not 0."),
        # an expiry past the year 9999 (7 days in microseconds): every login a 500
        ({"JWT_REFRESH_LIFETIME": "604800000000"}, "JWT_ACCESS_LIFETIME and JWT_REFRESH_LIFETIME"),
        ({"JWT_ACCESS_LIFETIME": "10" + "0" * 20}, "JWT_ACCESS_LIFETIME and JWT_REFRESH_LIFETIME"),
        ({"JWT_REFRESH_REUSE_GRACE": "-1"}, "JWT_REFRESH_REUSE_GRACE must be at least 0, not -1."),
        ({"CELERY_VISIBILITY_TIMEOUT": "0"}, "CELERY_VISIBILITY_TIMEOUT must be at least 1"),
        ({"DB_TCP_USER_TIMEOUT": "0"}, "DB_TCP_USER_TIMEOUT must be at least 1, not 0."),
        ({"DB_STATEMENT_TIMEOUT": "-1"}, "DB_STATEMENT_TIMEOUT must be at least 0, not -1."),
        ({"EMAIL_PORT": "0"}, "EMAIL_PORT must be at least 1, not 0."),
        # where 0 means "none" (close after each request, no HSTS, no proxy), less is refused
        ({"DB_CONN_MAX_AGE": "-5"}, "DB_CONN_MAX_AGE must be at least 0, not -5."),
        ({"SECURE_HSTS_SECONDS": "-1"}, "SECURE_HSTS_SECONDS must be at least 0, not -1."),
        ({"TRUSTED_PROXY_COUNT": "-1"}, "TRUSTED_PROXY_COUNT must be at least 0, not -1."),
        # reset emails would carry "auth.example.com/reset-password/?token=...", no link at all
        ({"PUBLIC_URL": "auth.example.com"}, "PUBLIC_URL must be a URL starting http:// or"),
        ({"PASSWORD_RESET_URL": "/reset"}, "PASSWORD_RESET_URL must be a URL starting http://"),
        # a space pasted along (the dashboard, a copied line) would end up inside every reset
        # link ("https://auth.example.com /reset-password/") and in ALLOWED_HOSTS, where the
        # custom domain would then answer 400 to every request
        ({"PUBLIC_URL": "https://auth.example.com "}, "PUBLIC_URL must be a URL starting http"),
        ({"PUBLIC_URL": "https://auth.example.com/\n"}, "PUBLIC_URL must be a URL starting http"),
        ({"PASSWORD_RESET_URL": "https://app.example.com /reset"}, "PASSWORD_RESET_URL must be"),
        ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL must be a URL starting redis://"),
        # a browser's Origin never has a path or a trailing slash: such an entry matches nothing
        ({"CORS_ALLOWED_ORIGINS": "https://app.example.com/"}, "CORS_ALLOWED_ORIGINS takes"),
        ({"CORS_ALLOWED_ORIGINS": "app.example.com"}, "CORS_ALLOWED_ORIGINS takes origins"),
        ({"CORS_ALLOWED_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS takes origins like"),
        ({"CORS_ALLOWED_ORIGINS": "https://app.example.com:"}, "CORS_ALLOWED_ORIGINS takes"),
        ({"CORS_ALLOWED_ORIGINS": "https://app.example.com:web"}, "CORS_ALLOWED_ORIGINS takes"),
        ({"CORS_ALLOWED_ORIGINS": "https://app.example.com:70000"}, "CORS_ALLOWED_ORIGINS take"),
        ({"CORS_ALLOWED_ORIGINS": "https://app.example.com:0443"}, "CORS_ALLOWED_ORIGINS take"),
        # a browser on bücher.example sends https://xn--bcher-kva.example
        ({"CORS_ALLOWED_ORIGINS": "https://bücher.example"}, "the ASCII form browsers send"),
        # the password-changed notice would send people to nowhere
        ({"SUPPORT_CONTACT": "help at pay.example"}, "SUPPORT_CONTACT must be an email address"),
        ({"SUPPORT_CONTACT": "ftp://pay.example/help"}, "SUPPORT_CONTACT must be a URL starting"),
        # anymail refuses such a sender as an invalid address, which the worker took for a
        # refused recipient: every reset email dropped, every owed notice deleted
        ({"DEFAULT_FROM_EMAIL": "Acme, Inc. <no-reply@acme.example>"}, "DEFAULT_FROM_EMAIL must"),
        ({"DEFAULT_FROM_EMAIL": "no-reply"}, "DEFAULT_FROM_EMAIL must be one email address"),
        ({"DEFAULT_FROM_EMAIL": "Acme no-reply@acme.example"}, "DEFAULT_FROM_EMAIL must be one"),
        # anymail's parser takes a line break inside as folding, but Django refuses the header
        # (BadHeaderError) on every send, which the worker gives up at once as its own error
        ({"DEFAULT_FROM_EMAIL": "Acme Pay\n<no-reply@acme.example>"}, "DEFAULT_FROM_EMAIL must"),
        ({"CELERY_BROKER_URL": "http://x"}, "CELERY_BROKER_URL must be a URL starting redis://"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING"),
        ({"PASSWORD_HASH_THREADS": "0"}, "PASSWORD_HASH_THREADS must be at least 1, not 0."),
        # a descriptor per slot in every hash thread: 600 ran a worker out of open files
        ({"PASSWORD_HASH_SLOTS": "600"}, "PASSWORD_HASH_SLOTS 1-32"),
        ({"PASSWORD_HASH_THREADS": "100"}, "PASSWORD_HASH_THREADS must be 1-16"),
        # a cache of no entries would refuse every token it was asked to remember
        ({"ACCESS_TOKEN_CACHE_SIZE": "0"}, "ACCESS_TOKEN_CACHE_SIZE must be at least 1, not 0."),
        # 0 would make Redis sockets non-blocking, so Redis would always look down
        ({"REDIS_SOCKET_TIMEOUT": "0"}, "REDIS_SOCKET_TIMEOUT must be more than 0 seconds"),
        ({"REDIS_SOCKET_TIMEOUT": "1s"}, "REDIS_SOCKET_TIMEOUT must be a number of seconds"),
        # "inf" overflowed the socket calls: every Redis call failed, and the throttles with it
        ({"REDIS_SOCKET_TIMEOUT": "inf"}, "REDIS_SOCKET_TIMEOUT must be at most 3600 seconds"),
        # past a C int, PostgreSQL, libpq and the client's own waits fail at the first query
        ({"DB_STATEMENT_TIMEOUT": "99999999999"}, "DB_STATEMENT_TIMEOUT must be at most 86400000"),
        ({"DB_CONNECT_TIMEOUT": "2147483647"}, "DB_CONNECT_TIMEOUT must be at most 86400, not"),
        ({"DB_TCP_USER_TIMEOUT": "1" + "0" * 11}, "DB_TCP_USER_TIMEOUT must be at most 2147483647"),
        ({"JWT_REFRESH_REUSE_GRACE": "1" + "0" * 20}, "JWT_REFRESH_REUSE_GRACE must be at most"),
        ({"EMAIL_PORT": "70000"}, "EMAIL_PORT must be at most 65535, not 70000."),
        # redis-py read a database it could not parse as 0, shared with whatever else uses it
        ({"REDIS_URL": "redis://127.0.0.1:6379/1O"}, "REDIS_URL must name its Redis database by"),
        ({"REDIS_URL": "unix:///run/redis.sock?db=one"}, "REDIS_URL must name its Redis database"),
        ({"CELERY_BROKER_URL": "redis://127.0.0.1:6379/x"}, "CELERY_BROKER_URL must name its"),
        # the clients refuse such a port only at first use
        ({"REDIS_URL": "redis://127.0.0.1:63x9/0"}, "REDIS_URL must be a URL starting redis://"),
        ({"REDIS_URL": "redis://127.0.0.1:99999/0"}, "REDIS_URL must be a URL starting redis://"),
        ({"PUBLIC_URL": "https://auth.example.com:44x3"}, "PUBLIC_URL must be a URL starting"),
        # the default reset link would be "https://auth.example.com?next=/reset-password/..."
        ({"PUBLIC_URL": "https://auth.example.com?next=/"}, "PUBLIC_URL is the service's base"),
        ({"PUBLIC_URL": "https://auth.example.com/#"}, "PUBLIC_URL is the service's base URL"),
        # Django compares them with the port stripped from the request's host: no entry with a
        # scheme, port, path or final dot ever matches
        ({"ALLOWED_HOSTS": "https://api.example.com"}, "ALLOWED_HOSTS takes host names like"),
        ({"ALLOWED_HOSTS": "api.example.com:443"}, "ALLOWED_HOSTS takes host names like"),
        ({"ALLOWED_HOSTS": "localhost,[::1]:8000"}, "ALLOWED_HOSTS takes host names like"),
        ({"ALLOWED_HOSTS": "api.example.com/"}, "ALLOWED_HOSTS takes host names like"),
        ({"ALLOWED_HOSTS": "api.example.com."}, "ALLOWED_HOSTS takes host names like"),
        # compared whole with a browser's Origin, as CORS's are
        ({"CSRF_TRUSTED_ORIGINS": "https://admin.example.com/"}, "CSRF_TRUSTED_ORIGINS takes"),
        ({"CSRF_TRUSTED_ORIGINS": "admin.example.com"}, "CSRF_TRUSTED_ORIGINS takes origins"),
        # replaced by the service's own values without a word
        (
            {"DATABASE_URL": "postgres://u@db.example:5432/app?connect_timeout=10"},
            "DATABASE_URL sets connect_timeout, which the service sets itself: remove it from "
            "the URL and set DB_CONNECT_TIMEOUT instead.",
        ),
        (
            {"DATABASE_URL": "postgres://u@db.example:5432/app?keepalives=0"},
            "DATABASE_URL sets keepalives, which the service sets itself",
        ),
        (
            {"DATABASE_URL": "postgres://u@db.example/app?options=-c%20statement_timeout%3D100"},
            "DATABASE_URL sets statement_timeout in its options, which DB_STATEMENT_TIMEOUT sets",
        ),
        # a typo must not turn on the switch that prints every API request, reset links included
        ({"ANYMAIL_DEBUG_API_REQUESTS": "flase"}, "ANYMAIL_DEBUG_API_REQUESTS must be true or"),
    ],
)
def test_bad_configuration_refuses_to_start_with_a_clear_message(env, message):
    result = load_settings(**env)

    assert result.returncode != 0
    assert message in result.stderr


def test_a_malformed_database_url_is_refused_without_echoing_its_password():
    result = load_settings(DATABASE_URL="postgres://app:s3cr/et@db.example:5432/app")

    assert result.returncode != 0
    assert "DATABASE_URL is not a valid URL" in result.stderr
    assert "s3cr" not in result.stderr


@pytest.mark.parametrize(
    "env",
    [
        # a password with "#" or a space not percent-encoded leaves the URL without its host
        {"REDIS_URL": "redis://:s3cr#et@cache.example:6379/0"},
        {"REDIS_URL": "redis://default:s3cr et@cache.example:6379/0"},
        # a scheme the service does not take, the password well formed
        {"REDIS_URL": "redis+tls://default:s3cret@cache.example:6379/0"},
        # no scheme at all: everything before the host is the credentials all the same
        {"REDIS_URL": "default:s3cret@cache.example:6379"},
        {"CELERY_BROKER_URL": "amqp://user:s3cr et@mq.example/vhost"},
        {"CELERY_BROKER_URL": "sqs://key:s3cret@"},
        # redis-py also takes the user and password in the query
        {"REDIS_URL": "unix:///run/redis.sock?db=1&password=s3cr et"},
        {"REDIS_URL": "redis://cache.example:6379/0?username=app&password=s3cr@et x"},
    ],
)
def test_a_malformed_redis_or_broker_url_is_refused_without_echoing_its_password(env):
    result = load_settings(**env)

    assert result.returncode != 0
    (name,) = env
    assert f"{name} must be a URL starting" in result.stderr
    assert "s3cr" not in result.stderr


@pytest.mark.parametrize(
    ("redis_url", "broker_url"),
    [
        ("unix:///run/redis.sock", "redis+socket:///run/redis.sock?virtual_host=0"),
        ("unix:///run/redis.sock?db=3", "redis+socket:///run/redis.sock?virtual_host=3"),
        (
            "unix://:p%40ss@/run/redis.sock?db=2",
            "redis+socket://:p%40ss@/run/redis.sock?virtual_host=2",
        ),
        (
            "unix:///run/redis.sock?password=p@ss",
            "redis+socket://:p%40ss@/run/redis.sock?virtual_host=0",
        ),
        # a Redis 6 ACL user: its password is refused as the default user's
        (
            "unix://app:p%40ss@/run/redis.sock?db=1",
            "redis+socket://app:p%40ss@/run/redis.sock?virtual_host=1",
        ),
        (
            "unix:///run/redis.sock?username=app&password=pw",
            "redis+socket://app:pw@/run/redis.sock?virtual_host=0",
        ),
    ],
)
def test_a_redis_socket_is_the_broker_in_the_form_kombu_reads(redis_url, broker_url):
    # kombu knows no unix:// transport: the worker would die at start-up on REDIS_URL's form
    result = load_settings("(s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT)", REDIS_URL=redis_url)

    assert result.returncode == 0, result.stderr
    # without kombu's "redis+" prefix, which would name kombu's transport over the project's
    socket_url = broker_url.removeprefix("redis+")
    assert result.stdout.strip() == repr(
        (socket_url, "auth_service.broker_transport:SocketTransport")
    )


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_URL": "redis://:s3cret@cache.example:63x9/0"},
        {"CELERY_BROKER_URL": "amqp://user:s3cret@mq.example:5672x/vhost"},
        {"PUBLIC_URL": "https://admin:s3cret@auth.example.com"},
    ],
)
def test_a_url_with_a_bad_port_or_a_user_is_refused_without_echoing_its_password(env):
    result = load_settings(**env)

    assert result.returncode != 0
    (name,) = env
    assert name in result.stderr
    assert "s3cret" not in result.stderr


def test_a_redis_url_whose_database_is_no_number_is_refused_without_echoing_it():
    # in a malformed URL, what stands where the database goes may be part of the password
    result = load_settings(REDIS_URL="redis://cache.example:6379/s3cret@x")

    assert result.returncode != 0
    assert "REDIS_URL must name its Redis database by number" in result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize("blank", ["", " "])
def test_a_blank_security_switch_keeps_the_production_default(blank):
    # as for every other variable, empty is unset: a key added with no value in the dashboard
    # (or a compose file's ${SECURE_COOKIES:-}) must not drop the HTTPS redirect or Secure flag
    result = load_settings(
        "(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)",
        SECURE_SSL_REDIRECT=blank,
        SECURE_COOKIES=blank,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(True, True, True)"


@pytest.mark.parametrize("off", ["0", "no", "off", " False "])
def test_anymail_switches_take_every_spelling_of_off(off):
    # anymail takes any non-empty string as true: "0" printed every API request to the log
    result = load_settings(
        "(s.ANYMAIL['DEBUG_API_REQUESTS'], s.ANYMAIL['POSTMARK_USE_BULK_API'])",
        ANYMAIL_DEBUG_API_REQUESTS=off,
        ANYMAIL_POSTMARK_USE_BULK_API=off,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(False, False)"


def test_anymail_settings_that_are_no_switch_keep_their_value():
    result = load_settings("s.ANYMAIL['SPARKPOST_SUBACCOUNT']", ANYMAIL_SPARKPOST_SUBACCOUNT="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_hosts_and_trusted_origins_in_their_accepted_forms():
    result = load_settings(
        "(s.ALLOWED_HOSTS, s.CSRF_TRUSTED_ORIGINS)",
        ALLOWED_HOSTS=" api.example.com,, .example.org, [::1], 10.0.0.5 ",
        CSRF_TRUSTED_ORIGINS="https://*.example.com, https://Admin.example.com:443",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(
        (
            ["api.example.com", ".example.org", "[::1]", "10.0.0.5", "auth.example.com"],
            ["https://*.example.com", "https://admin.example.com"],
        )
    )


def test_a_database_url_with_whitespace_is_refused_without_echoing_its_password():
    result = load_settings(DATABASE_URL="postgres://app:s3cret@db.example:5432/app ")

    assert result.returncode != 0
    assert "DATABASE_URL has whitespace" in result.stderr
    assert "s3cret" not in result.stderr


def test_cors_origins_are_a_list_in_the_letter_case_browsers_send():
    result = load_settings(
        "s.CORS_ALLOWED_ORIGINS",
        CORS_ALLOWED_ORIGINS="https://App.Example.com, http://localhost:3000, https://b.example:443,"
        " https://xn--bcher-kva.example, http://[::1]:8080",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "['https://app.example.com', 'http://localhost:3000', 'https://b.example',"
        " 'https://xn--bcher-kva.example', 'http://[::1]:8080']"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ""), (" help@pay.example ", "help@pay.example"), ("https://pay.example/help", None)],
)
def test_a_support_contact_is_an_address_or_a_page(value, expected):
    result = load_settings("repr(s.SUPPORT_CONTACT)", SUPPORT_CONTACT=value)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(value if expected is None else expected)


@pytest.mark.parametrize(
    "value",
    [
        "no-reply@acme.example",
        "Acme Pay <no-reply@acme.example>",
        '"Acme, Inc." <no-reply@acme.example>',
        "Zoë <zoe@bücher.example>",
        "auth@localhost",
    ],
)
def test_a_sender_is_one_address_with_or_without_a_name(value):
    result = load_settings("s.DEFAULT_FROM_EMAIL", DEFAULT_FROM_EMAIL=value)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == value


def test_anymail_switches_written_true_or_false_are_booleans():
    result = load_settings(
        "s.ANYMAIL", ANYMAIL_DEBUG_API_REQUESTS="false", ANYMAIL_POSTMARK_SERVER_TOKEN="tok"
    )

    assert result.returncode == 0, result.stderr
    assert "'DEBUG_API_REQUESTS': False" in result.stdout
    assert "'POSTMARK_SERVER_TOKEN': 'tok'" in result.stdout


def test_log_level_is_taken_in_any_letter_case():
    result = load_settings("s.LOGGING['root']['level']", LOG_LEVEL="debug")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DEBUG"


def test_debug_allows_local_defaults():
    result = load_settings(DEBUG="true", SECRET_KEY=None, PUBLIC_URL=None, REDIS_URL=None)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_public_url_falls_back_to_render_external_url():
    result = load_settings(
        "s.PASSWORD_RESET_URL", PUBLIC_URL="", RENDER_EXTERNAL_URL="https://auth.onrender.com"
    )

    assert result.stdout.strip() == "https://auth.onrender.com/reset-password/"


@pytest.mark.django_db
def test_the_services_statements_are_bounded_by_default():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "5s"
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == "0"


def test_manage_py_commands_may_run_long_statements_but_not_wait_long_for_a_lock():
    # Migrations and the token sweep on a big table may rightly take longer than a request; a
    # migration's ALTER waiting for a table lock must not hold up requests queued behind it.
    result = subprocess.run(  # noqa: S603 - fixed argv
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from django.db import connection; c = connection.cursor(); "
            "c.execute('SHOW statement_timeout'); print(c.fetchone()[0]); "
            "c.execute('SHOW lock_timeout'); print(c.fetchone()[0])",
        ],
        env={**BASE_ENV, "DATABASE_URL": os.environ["DATABASE_URL"]},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "3s"]


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [("250", "-c search_path=public -c statement_timeout=250"), ("0", "-c search_path=public")],
)
def test_statement_timeout_comes_from_the_environment_beside_the_urls_options(timeout, expected):
    # Options in DATABASE_URL (a search path, say) are kept; 0 leaves the server's default.
    result = load_settings(
        "s.DATABASES['default']['OPTIONS']['options']",
        DATABASE_URL=BASE_ENV["DATABASE_URL"] + "?options=-c%20search_path%3Dpublic",
        DB_STATEMENT_TIMEOUT=timeout,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_options_in_the_database_url_that_the_service_does_not_set_are_kept():
    result = load_settings(
        "s.DATABASES['default']['OPTIONS']",
        DATABASE_URL=BASE_ENV["DATABASE_URL"]
        + "?sslmode=require&options=-c%20deadlock_timeout%3D2s",
    )

    assert result.returncode == 0, result.stderr
    assert "'sslmode': 'require'" in result.stdout
    assert "'options': '-c deadlock_timeout=2s -c statement_timeout=5000'" in result.stdout


@pytest.mark.parametrize(
    ("broker_url", "transport"),
    [
        ("redis://127.0.0.1:6379/15", "auth_service.broker_transport:Transport"),
        # kombu enables TLS for this scheme only with its own transport
        ("rediss://red.example.com:6380/0", "None"),
        ("amqp://guest:guest@127.0.0.1:5672//", "None"),
    ],
)
def test_only_a_redis_url_gets_the_project_transport(broker_url, transport):
    result = load_settings(
        show="getattr(s, 'CELERY_BROKER_TRANSPORT', None)", CELERY_BROKER_URL=broker_url
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == transport


def test_a_rediss_broker_connects_with_tls():
    # As Celery opens it: the URL with the configured transport, if any
    connection_ssl = (
        "__import__('kombu').Connection("
        "s.CELERY_BROKER_URL, transport=getattr(s, 'CELERY_BROKER_TRANSPORT', None)).ssl"
    )
    result = load_settings(show=connection_ssl, CELERY_BROKER_URL="rediss://red.example.com:6380/0")

    assert result.returncode == 0, result.stderr
    assert "ssl_cert_reqs" in result.stdout


@pytest.mark.parametrize(
    ("env", "rates"),
    [
        (
            {},
            {
                "login_ip": "30/min",
                "login_email": "5/min",
                "reset_ip": "20/hour",
                "reset_email": "5/hour",
                "password_change": "5/min",
                "register_ip": "20/hour",
            },
        ),
        (
            {
                "THROTTLE_LOGIN_IP": "100/minute",
                "THROTTLE_LOGIN_EMAIL": "7/min",
                "THROTTLE_RESET_IP": "3/day",
                "THROTTLE_RESET_EMAIL": "2/second",
                "THROTTLE_PASSWORD_CHANGE": "9/hour",
                "THROTTLE_REGISTER_IP": "4/min",
            },
            {
                "login_ip": "100/minute",
                "login_email": "7/min",
                "reset_ip": "3/day",
                "reset_email": "2/second",
                "password_change": "9/hour",
                "register_ip": "4/min",
            },
        ),
    ],
    ids=["the contract's defaults and ours", "each from its variable"],
)
def test_rate_limits_come_from_the_environment(env, rates):
    result = load_settings(show="s.THROTTLE_RATES", **env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(rates)


@pytest.mark.parametrize(
    ("public_url", "host"),
    [
        ("https://auth.example.com", "auth.example.com"),
        ("https://Auth.Example.com:8443/", "auth.example.com"),
        ("http://[::1]:8000", "[::1]"),
    ],
)
def test_the_public_url_is_a_host_the_service_answers_without_listing_it(public_url, host):
    result = load_settings(
        "s.ALLOWED_HOSTS", PUBLIC_URL=public_url, ALLOWED_HOSTS="api.example.com"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(["api.example.com", host])


@pytest.mark.parametrize(("render", "expected"), [("true", "(2, True)"), (None, "(0, False)")])
def test_on_render_two_proxies_and_its_internal_hops_are_trusted_by_default(render, expected):
    result = load_settings("(s.TRUSTED_PROXY_COUNT, s.TRUSTED_PROXY_SKIP_PRIVATE)", RENDER=render)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
