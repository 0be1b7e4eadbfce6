"""Liveness and readiness probes: plain Django views, no DRF, no auth, no throttles."""

from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection
from django.http import JsonResponse
from kombu.exceptions import LimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from auth_service import redis_client
from auth_service.celery import app as celery_app
from auth_service.exceptions import COMPACT_JSON, allow_methods
from auth_service.postgresql import deadline

# Any other method is the contract's JSON 405.
PROBE_METHODS = ("GET", "HEAD")
READY_KEY = "auth:readyz"


@allow_methods(*PROBE_METHODS)
def healthz(request):
    """The process is alive. Touches nothing, so it is also the server's cheapest endpoint."""
    return JsonResponse({"status": "ok"}, json_dumps_params=COMPACT_JSON)


def _database() -> str:
    # A server that has stopped answering is reported within the connect timeout, before a
    # platform's health-check timeout could cut the probe off without its answer.
    limit = connection.settings_dict["OPTIONS"].get("connect_timeout")
    try:
        with deadline.bounded(limit), connection.cursor() as cursor:
            # Writable, not only answering: a standby after a failover, or a database set
            # read-only, answers SELECT 1 but refuses every registration, refresh and reset.
            cursor.execute("SELECT current_setting('transaction_read_only')")
            read_only = cursor.fetchone()[0] == "on"
    except (DatabaseError, InterfaceError):  # InterfaceError: a connection already closed
        return "unavailable"
    return "unavailable" if read_only else "ok"


def _redis() -> str:
    # A write, not a PING: a Redis out of memory or turned read-only still answers PING, but
    # can hold no reset token then.
    try:
        redis_client.client().set(READY_KEY, 1, ex=60)
    except RedisError:
        return "unavailable"
    return "ok"


# REDIS_URL's server as the broker's URL may name it: kombu takes a Redis socket (unix://) as
# socket://, or redis+socket://.
SOCKET_SCHEMES = ("unix", "socket", "redis+socket")


def _server(url: str) -> tuple[str, str]:
    """The server a Redis or broker URL names, as written (no name is resolved): its scheme and
    host and port, or its socket's path. The user, password and database are not part of it."""
    parts = urlsplit(url)
    if parts.scheme in SOCKET_SCHEMES:
        return ("unix", parts.path)
    return (parts.scheme, parts.netloc.rpartition("@")[2].lower())


def _broker_apart() -> bool:
    """Whether the broker is on a server of its own: REDIS_URL's check does not cover it then.
    Another database of REDIS_URL's server is the same server: it answers when that one does."""
    broker_url = celery_app.conf.broker_write_url or celery_app.conf.broker_url
    return _server(broker_url) != _server(settings.REDIS_URL)


def _broker() -> str:
    # Over the connections a forgot publishes with (Celery's pool), not one of its own: no
    # connection is opened per probe, and a pooled one that died is found as the next forgot
    # would find it. A publish holds its connection only while it sends: none free within the
    # connect timeout means publishing is stuck.
    limit = celery_app.conf.broker_connection_timeout
    try:
        with celery_app.pool.acquire(block=True, timeout=limit) as broker:
            return _broker_takes_messages(broker, limit)
    except LimitExceeded:
        return "unavailable"


def _broker_takes_messages(broker, limit: float) -> str:
    try:
        # Connecting is tried once (the worker retries; a request must not), within the
        # connect timeout. Nothing here is logged: the broker's URL carries its password.
        broker.ensure_connection(max_retries=0, timeout=limit)
        if broker.transport.driver_type == "redis":
            # A write, as for REDIS_URL; the transport's socket timeouts bound it.
            with broker.default_channel.conn_or_acquire() as client:
                client.set(READY_KEY, 1, ex=60)
        else:
            # AMQP has no ping: a passive declare of an exchange every server has is one round
            # trip that changes nothing. py-amqp waits for an answer without a timeout of its own.
            with broker.connection.transport.having_timeout(limit):
                broker.default_channel.exchange_declare("amq.direct", "direct", passive=True)
    except (BrokerError, *broker.connection_errors, *broker.channel_errors):
        if broker.transport.driver_type != "redis":
            # A late answer may still come, or the server closed the channel: the next
            # publish gets a new connection.
            broker.collect()
        return "unavailable"
    return "ok"


@allow_methods(*PROBE_METHODS)
def readyz(request):
    """Ready to serve: PostgreSQL and Redis take writes, and so does a broker of its own."""
    checks = {"database": _database(), "redis": _redis()}
    if _broker_apart():
        checks["broker"] = _broker()
    ok = all(state == "ok" for state in checks.values())
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks},
        status=200 if ok else 503,
        json_dumps_params=COMPACT_JSON,
    )


class ProbeMiddleware:
    """Answer the probes before CommonMiddleware validates the Host header.

    Platform and container health checks reach the process by its internal address over plain
    HTTP, with a Host header that is not in ALLOWED_HOSTS; Django would refuse them with a 400
    (SECURE_REDIRECT_EXEMPT already spares them the HTTPS redirect). Security headers still
    apply; everything else goes through the full middleware stack.
    """

    probes = {"/healthz": healthz, "/readyz": readyz}

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = self.probes.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        response = probe(request)
        # A state, not a document: a cache in between must not answer "ok" for a dead process.
        response["Cache-Control"] = "no-store"
        return response
