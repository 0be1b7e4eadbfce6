"""Liveness and readiness probes: plain Django views, no DRF, no auth, no throttles."""

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django_redis import get_redis_connection
from redis.exceptions import RedisError


def healthz(request):
    """The process is alive. Touches nothing, so it is also the server's cheapest endpoint."""
    return JsonResponse({"status": "ok"})


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return "unavailable"
    return "ok"


def _redis() -> str:
    try:
        get_redis_connection("default").ping()
    except RedisError:
        return "unavailable"
    return "ok"


def readyz(request):
    """Ready to serve: PostgreSQL and Redis both answer."""
    checks = {"database": _database(), "redis": _redis()}
    ok = all(state == "ok" for state in checks.values())
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )
