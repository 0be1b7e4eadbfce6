"""Redis is down or hangs: sessions keep working, Redis-backed features say 503, all recover.

"Stopped" is a crashed server (connections refused at once); "frozen" is a server that accepts
connections but never answers, where only the client's socket timeouts stop a request hanging.
"""

import pytest

from auth_service.tests.faults.harness import wait_for

# The service's Redis timeouts are 1 s; the margin covers a loaded 2-core CI machine.
PROMPT = 3.0


def break_redis(server, how: str) -> None:
    if how == "stopped":
        server.stop()
    else:
        server.freeze()


def mend_redis(server, how: str) -> None:
    if how == "stopped":
        server.start()
    else:
        server.thaw()


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_sessions_keep_working_while_redis_is_down(api, account, redis_server, how):
    # Given a signed-up user and an outage of Redis
    break_redis(redis_server, how)

    # When they log in, refresh their session and ask who they are
    login = api.post("/api/v1/auth/login/", {"email": account.email, "password": account.password})
    refreshed = api.post("/api/v1/auth/token/refresh/", {"refresh": account.refresh})
    me = api.get("/api/v1/auth/me/", token=account.access)

    # Then all of it works: rate limiting fails open instead of locking everyone out
    assert (login.status_code, refreshed.status_code, me.status_code) == (200, 200, 200)
    assert me.json()["email"] == account.email
    for response in (login, refreshed, me):
        assert response.elapsed.total_seconds() < PROMPT


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_readyz_names_redis_while_it_is_down(api, redis_server, how):
    break_redis(redis_server, how)

    response = api.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
    }
    assert response.elapsed.total_seconds() < PROMPT


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_service_recovers_without_restart_when_redis_returns(api, redis_server, how):
    # Given the service noticed the outage
    break_redis(redis_server, how)
    assert api.get("/readyz").status_code == 503

    # When Redis comes back
    mend_redis(redis_server, how)

    # Then every gunicorn worker reports ready again, without a restart
    wait_for(lambda: api.get("/readyz").status_code == 200, timeout=10, what="readyz 200")
    assert all(api.get("/readyz").status_code == 200 for _ in range(10))
