"""Liveness and readiness probes: plain Django views, no DRF, no auth, no throttles."""

from django.db import DatabaseError, InterfaceError, connection
from django.http import JsonResponse
from redis.exceptions import RedisError

from auth_service import redis_client
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


@allow_methods(*PROBE_METHODS)
def readyz(request):
    """Ready to serve: PostgreSQL and Redis take writes."""
    checks = {"database": _database(), "redis": _redis()}
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
        # CommonMiddleware, which the probes skip, sets it for every other response; without it
        # gunicorn sends the body chunked.
        response.headers.setdefault("Content-Length", str(len(response.content)))
        # A state, not a document: a cache in between must not answer "ok" for a dead process.
        response["Cache-Control"] = "no-store"
        return response
