import logging
import socket
import subprocess
import time

import pytest
import redis

from auth_service.celery import app
from auth_service.env import kombu_socket_url
from conftest import cut_off_redis, read_only_database

# The broker's connect and socket timeouts (REDIS_SOCKET_TIMEOUT) are 1 s; the margin covers a
# loaded CI machine.
PROMPT = 3.0
BROKER_PASSWORD = "broker-Secret-passphrase"


@pytest.mark.django_db
def test_healthz_is_ok_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.content == b'{"status":"ok"}'


@pytest.mark.django_db
def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.content == b'{"status":"ok","checks":{"database":"ok","redis":"ok"}}'


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_no_cache_in_between_may_keep_a_probes_answer(client, settings, path):
    ok = client.get(path)
    cut_off_redis(settings)
    down = client.get("/readyz")

    assert ok["Cache-Control"] == down["Cache-Control"] == "no-store"
    assert down.status_code == 503


@pytest.mark.django_db
def test_readyz_is_503_naming_redis_when_redis_is_unreachable(client, settings):
    cut_off_redis(settings)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
    }


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_a_platform_check_by_internal_address(client, settings, path):
    # Given production host validation and the HTTPS redirect
    settings.ALLOWED_HOSTS = ["auth.example.com"]
    settings.SECURE_SSL_REDIRECT = True

    # When the platform probes the process by IP over plain HTTP
    response = client.get(path, HTTP_HOST="10.0.4.7:10000")

    # Then the probe answers instead of a 400 or a redirect
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_other_paths_still_refuse_unknown_hosts(client, settings):
    settings.ALLOWED_HOSTS = ["auth.example.com"]

    response = client.get("/api/schema/", HTTP_HOST="10.0.4.7:10000")

    assert response.status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_probes_answer_only_get_and_head(client, path, method):
    response = getattr(client, method)(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json() == {
        "detail": f'Method "{method.upper()}" not allowed.',
        "code": "method_not_allowed",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_probes_give_their_length_like_every_other_response(client, path, method):
    response = getattr(client, method)(path)

    assert response["Content-Length"] == str(len(response.content))


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_head(client, path):
    assert client.head(path).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_naming_the_database_when_its_connection_was_closed_under_it(client):
    # A persistent connection whose socket the driver already closed: InterfaceError, which
    # is not a DatabaseError.
    from django.db import connection

    connection.ensure_connection()
    connection.connection.close()
    try:
        response = client.get("/readyz")
    finally:
        connection.connection = None  # forget the dead handle; the teardown reconnects

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "redis": "ok"},
    }


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_naming_the_database_while_it_refuses_writes(client, api):
    # What a standby after a failover does to every transaction
    with read_only_database():
        register = api.post(
            "/api/v1/auth/register/",
            {"email": "new@example.com", "password": "a-brand-new-passphrase", "full_name": "N"},
            format="json",
        )
        ready = client.get("/readyz")

    assert register.status_code == 503
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "unavailable", "redis": "ok"}


@pytest.fixture
def broker_at():
    """Point the email queue, as Celery publishes to it, at another URL for the test."""
    before = app.conf.broker_url, app.conf.broker_transport

    def point(url: str, transport: str | None = before[1]) -> None:
        app.conf.broker_url, app.conf.broker_transport = url, transport
        # Celery keeps its connection and producer pools until told otherwise.
        app._pool = None
        app.amqp._producer_pool = None

    yield point
    point(*before)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return unused.getsockname()[1]


@pytest.fixture
def own_broker(tmp_path, closed_port):
    """A Redis server that is only the email queue, apart from REDIS_URL's."""
    port = closed_port
    server = subprocess.Popen(  # noqa: S603 - fixed argv
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--requirepass", BROKER_PASSWORD, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=BROKER_PASSWORD, socket_timeout=2)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield client, f"redis://:{BROKER_PASSWORD}@127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.fixture
def silent_port():
    """A port whose server takes connections and never answers: a hung broker."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)  # the kernel completes connections; nothing ever reads them
        yield listening.getsockname()[1]


def broker_url(scheme: str, port: int) -> str:
    if scheme == "amqp":
        return f"amqp://auth:{BROKER_PASSWORD}@127.0.0.1:{port}//"
    return f"redis://:{BROKER_PASSWORD}@127.0.0.1:{port}/0"


def point_broker(broker_at, scheme: str, port: int) -> None:
    # kombu picks the AMQP transport from the URL; Redis goes through the project's.
    if scheme == "amqp":
        broker_at(broker_url(scheme, port), None)
    else:
        broker_at(broker_url(scheme, port))


@pytest.mark.django_db
def test_readyz_checks_a_broker_on_a_server_of_its_own(client, broker_at, own_broker):
    broker, url = own_broker
    broker_at(url)

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.content == (
        b'{"status":"ok","checks":{"database":"ok","redis":"ok","broker":"ok"}}'
    )
    # A write, as for REDIS_URL: a broker out of memory would refuse every queued email
    assert broker.ttl("auth:readyz") > 0


ON_A_SOCKET = "unix://:pw@/nowhere/redis.sock?db=3"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("redis_url", "broker", "transport"),
    [
        ("redis://:pw@127.0.0.1:1/0", "redis://:pw@127.0.0.1:1/5", app.conf.broker_transport),
        # CELERY_BROKER_URL unset: the settings hand kombu the socket's URL in its own form
        (
            ON_A_SOCKET,
            kombu_socket_url(ON_A_SOCKET).removeprefix("redis+"),
            "auth_service.broker_transport:SocketTransport",
        ),
    ],
    ids=["another database", "socket"],
)
def test_readyz_leaves_a_broker_on_redis_urls_server_to_the_redis_check(
    client, settings, broker_at, redis_url, broker, transport
):
    # Given the broker on REDIS_URL's server (which does not answer: a check would fail)
    settings.REDIS_URL = redis_url
    broker_at(broker, transport)

    response = client.get("/readyz")

    # Then the contract's body, unchanged: whether that server answers is the redis check's to
    # say (it asks the test's cache, which still points at the test's Redis)
    assert response.status_code == 200
    assert response.content == b'{"status":"ok","checks":{"database":"ok","redis":"ok"}}'


@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["redis", "amqp"])
@pytest.mark.parametrize("port", ["closed_port", "silent_port"], ids=["refusing", "hanging"])
def test_readyz_is_503_naming_the_broker_within_its_timeout_when_it_is_unreachable(
    client, broker_at, caplog, request, scheme, port
):
    # Given forgot's emails queue on a broker of their own, which refuses connections or hangs
    point_broker(broker_at, scheme, request.getfixturevalue(port))
    caplog.set_level(logging.DEBUG)

    started = time.monotonic()
    response = client.get("/readyz")

    # Then a platform's probe gets its answer, naming the broker, before it gives up
    assert time.monotonic() - started < PROMPT
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "ok", "broker": "unavailable"},
    }
    # and the broker's URL, which holds its password, is logged nowhere
    assert BROKER_PASSWORD not in caplog.text


@pytest.mark.django_db
def test_readyz_finds_the_brokers_connection_dead_once_it_stopped(client, broker_at, own_broker):
    # Given a broker of its own that the service has been publishing to
    broker, url = own_broker
    broker_at(url)
    assert client.get("/readyz").status_code == 200

    # When that server goes away under the open connection
    broker.shutdown(nosave=True)
    started = time.monotonic()
    response = client.get("/readyz")

    # Then the next probe says so within the timeout
    assert time.monotonic() - started < PROMPT
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "unavailable"
