"""Fault-test fixtures: the real service under gunicorn, wired to a private PostgreSQL and Redis.

One private PostgreSQL, one private Redis and one gunicorn serve the whole session, so the
suite stays fast. A test that breaks a dependency gets it back in working order on teardown.
"""

import os
import uuid
from dataclasses import dataclass

import psycopg2
import pytest

from auth_service.tests.faults.harness import (
    PASSWORD,
    Client,
    HoldingSmtpSink,
    NetworkNamespace,
    PrivatePostgres,
    PrivateRedis,
    WebServer,
    Worker,
    prepare,
)

# Rates far above what the tests send: throttles stay active (and must fail open) but never 429.
GENEROUS_RATES = {
    name: "100000/min"
    for name in ("THROTTLE_LOGIN_IP", "THROTTLE_LOGIN_EMAIL", "THROTTLE_RESET_IP")
    + ("THROTTLE_RESET_EMAIL", "THROTTLE_PASSWORD_CHANGE", "THROTTLE_REGISTER_IP")
}


@pytest.fixture
def netns():
    if not NetworkNamespace.available():
        reason = "needs root with iproute2 and iptables to drop packets"
        # CI runs as root and installs both (.ci/run): there a skip would hide a lost test.
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    namespace = NetworkNamespace()
    yield namespace
    namespace.destroy()


@pytest.fixture(scope="session")
def private_postgres():
    server = PrivatePostgres()
    server.start()
    server.create_database("auth_service")
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def service_env(private_postgres, private_redis) -> dict[str, str]:
    """The environment of every service process: production settings, private dependencies."""
    env = {
        **os.environ,
        **GENEROUS_RATES,
        "DATABASE_URL": private_postgres.database_url,
        "REDIS_URL": private_redis.url(0),
        "CELERY_BROKER_URL": private_redis.url(0),
        "SECRET_KEY": "fault-tests-only-secret-key-0000000000000000000000",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PUBLIC_URL": "https://auth.example.com",
        "PYTHONUNBUFFERED": "1",
        # Workers sweep up left-behind notices only in the tests about it (they set their own).
        "NOTICE_SWEEP_INTERVAL": "3600",
    }
    prepare(env)
    return env


@pytest.fixture(scope="session")
def web(service_env, tmp_path_factory):
    server = WebServer(env=service_env, log=tmp_path_factory.mktemp("web") / "gunicorn.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(web) -> Client:
    """HTTP to the shared gunicorn; fails the test if the service logged a 500 meanwhile."""
    seen = len(web.output())
    yield Client(web)
    assert "Internal Server Error" not in web.output()[seen:], web.output()[seen:]


@pytest.fixture
def postgres(private_postgres):
    """The private PostgreSQL, running again after the test whatever the test did to it."""
    yield private_postgres
    private_postgres.thaw()
    if not private_postgres.is_running():
        private_postgres.start()


@pytest.fixture
def redis_server(private_redis):
    """The private Redis, answering again after the test whatever the test did to it."""
    yield private_redis
    if private_redis.process is None:
        private_redis.start()
    else:
        private_redis.thaw()


@pytest.fixture
def sql(private_postgres):
    """Run SQL against the service's database from the test, e.g. to hold a lock."""
    conn = psycopg2.connect(private_postgres.database_url)
    yield conn
    conn.close()


@dataclass
class Account:
    email: str
    password: str
    access: str
    refresh: str


@pytest.fixture
def make_account(api):
    """Register a user with a live session, under an email no other test uses."""

    def make() -> Account:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        registered = api.post(
            "/api/v1/auth/register/",
            {"full_name": "Grace Hopper", "email": email, "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        pair = api.post("/api/v1/auth/login/", {"email": email, "password": PASSWORD}).json()
        return Account(email, PASSWORD, access=pair["access"], refresh=pair["refresh"])

    return make


@pytest.fixture
def account(make_account) -> Account:
    return make_account()


@pytest.fixture
def broker(private_redis):
    """The private Redis (cache and broker), emptied: no queued task from an earlier test."""
    client = private_redis.client()
    client.flushdb()
    return client


@pytest.fixture
def smtp():
    """A local SMTP server the worker sends to; it can hold sessions to catch a task mid-send."""
    sink = HoldingSmtpSink()
    sink.start()
    yield sink
    sink.release()
    sink.stop()


@pytest.fixture
def start_worker(service_env, smtp, broker, tmp_path):
    """Start Celery workers that mail the SMTP sink; all of them are killed after the test."""
    workers = []

    def start(*, wait: bool = True, **env) -> Worker:
        worker = Worker(
            env={**service_env, **smtp.client_env(), **env},
            log=tmp_path / f"worker-{len(workers)}.log",
        )
        workers.append(worker)
        worker.start(wait=wait)
        return worker

    yield start
    # Killed, not stopped: a warm shutdown can take 30 s (see test_worker), and the next test
    # starts from an emptied broker anyway.
    for worker in workers:
        if worker.process.poll() is None:
            worker.kill_all()
