"""Fixtures shared by every test: an API client, users, and a clean Redis database."""

import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from accounts import hash_pool, pages, throttling
from accounts.models import User

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _static_files_without_collectstatic(settings):
    """Production serves hashed files collected at build time; tests read the app folders."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True, scope="session")
def _not_the_development_redis(django_test_environment):
    """Every test empties its Redis database: never the one the service itself uses by default."""
    database = urlsplit(settings.REDIS_URL).path.strip("/") or "0"
    if database == "0":
        pytest.exit(
            f"REDIS_URL points at Redis database 0 ({settings.REDIS_URL}), which the tests would "
            "empty. Run scripts/test, or point REDIS_URL at a database of its own (…/15).",
            returncode=2,
        )


@pytest.fixture(autouse=True)
def _clean_redis():
    """Throttle counters and reset tokens from one test must not leak into the next."""
    cache.clear()
    # Nor may a Redis outage one test simulated: rate limits would stay off for seconds.
    throttling.outage.reset()
    pages.link_check_outage.reset()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def hashing_full(monkeypatch, settings, api):
    """A process whose hash pool already has its limit of hashes waiting or running: the next
    hash is refused busy. Call the function it gives to end them (it waits until they have)."""
    monkeypatch.setattr(hash_pool, "_executor", None)
    settings.PASSWORD_HASH_MAX_PENDING = 2
    api.get("/healthz")  # the client loads the middleware, which starts the hash threads
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as callers:
        held = [callers.submit(hash_pool.hash_run, release.wait, 10) for _ in range(2)]
        deadline = time.monotonic() + 5
        while hash_pool._pending._value and time.monotonic() < deadline:
            time.sleep(0.01)

        def end() -> None:
            release.set()
            assert all(future.result(timeout=10) for future in held)

        yield end
        end()


@contextlib.contextmanager
def read_only_database():
    """PostgreSQL refusing writes on the test's connection, as a standby after a failover does
    to every transaction (in a django_db(transaction=True) test)."""
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")


@pytest.fixture
def make_user(db):
    def make(email="ada@example.com", password=PASSWORD, full_name="Ada Lovelace", **extra):
        return User.objects.create_user(
            email=email, password=password, full_name=full_name, **extra
        )

    return make


@pytest.fixture
def user(make_user) -> User:
    return make_user()


@pytest.fixture
def login(api):
    """Log in through the API and return the token pair."""

    def do(email="ada@example.com", password=PASSWORD) -> dict:
        response = api.post(
            "/api/v1/auth/login/", {"email": email, "password": password}, format="json"
        )
        assert response.status_code == 200, response.content
        return response.json()

    return do


@pytest.fixture
def pair(user, login) -> dict:
    return login()


@pytest.fixture
def auth_api(pair) -> APIClient:
    """A client that sends the user's access token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    return client


def cut_off_redis(settings) -> None:
    """Point the cache (throttles, reset tokens) at a closed port: Redis is unreachable."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }


@pytest.fixture
def redis_down(settings):
    """Redis is unreachable for the test's requests."""
    cut_off_redis(settings)


@pytest.fixture
def broker_down():
    """The email queue refuses connections while the cache (throttles, reset tokens) answers,
    as a broker of its own that is down does. Call the function it gives to bring it back."""
    from auth_service.celery import app

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    reachable = app.conf.broker_url

    def reconnect(url: str) -> None:
        # Celery keeps its connection and producer pools until told otherwise.
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None

    reconnect(f"redis://127.0.0.1:{closed_port}/0")
    yield lambda: reconnect(reachable)
    reconnect(reachable)


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process, so a test sees the email the worker would send."""
    from auth_service.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def redis_client():
    """The raw client behind the cache: for asserting what Redis holds."""
    from auth_service import redis_client

    return redis_client.client()


@pytest.fixture
def smtp_sink():
    """A real SMTP server on a free local port; `.messages` holds what it received."""
    from testing.smtp import SmtpSink

    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def worker_process(transactional_db, smtp_sink):
    """A real Celery worker process on the test database and Redis, mailing the SMTP sink."""
    from testing.worker import WorkerProcess

    worker = WorkerProcess(smtp_port=smtp_sink.port)
    worker.start()
    yield worker
    worker.stop()
