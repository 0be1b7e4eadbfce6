"""Deploys and scale-downs send SIGTERM: work already in flight must still complete."""

import signal
import time

import pytest

from auth_service.tests.faults.harness import (
    Client,
    WebServer,
    backends_waiting_on_lock,
    start,
    wait_for,
)


@pytest.fixture
def own_web(service_env, tmp_path):
    """A gunicorn of this test's own, since the test shuts it down."""
    server = WebServer(env=service_env, log=tmp_path / "gunicorn.log", workers=2)
    server.start()
    yield server
    server.stop()


def test_sigterm_lets_a_login_in_flight_finish_with_its_tokens(own_web, account, sql):
    # Given a login in flight that is slow inside the database (the test holds a lock it needs)
    with sql.cursor() as cursor:
        cursor.execute("LOCK TABLE accounts_user IN ACCESS EXCLUSIVE MODE")
    api = Client(own_web)
    login = start(
        lambda: api.post(
            "/api/v1/auth/login/", {"email": account.email, "password": account.password}
        )
    )
    backends_waiting_on_lock(sql, 1)

    # When the platform sends SIGTERM to gunicorn, and only then the login's query can finish
    own_web.signal(signal.SIGTERM)
    wait_for(lambda: "Handling signal: term" in own_web.output(), timeout=10, what="SIGTERM seen")
    sql.rollback()

    # Then the user still gets their tokens, and gunicorn exits cleanly afterwards
    response = login.result(timeout=30)
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}
    assert own_web.wait(timeout=30) == 0


def test_a_quick_shutdown_refuses_the_logins_it_caught_as_busy_not_with_a_500(
    own_web, account, sql
):
    # Given logins in flight, slow inside the database (the test holds a lock they need)
    with sql.cursor() as cursor:
        cursor.execute("LOCK TABLE accounts_user IN ACCESS EXCLUSIVE MODE")
    api = Client(own_web)
    logins = [
        start(
            lambda: api.post(
                "/api/v1/auth/login/", {"email": account.email, "password": account.password}
            )
        )
        for _ in range(4)
    ]
    backends_waiting_on_lock(sql, 4)

    # When gunicorn is told to stop at once (SIGINT, as Ctrl-C sends), and only then their
    # queries can finish: the workers are exiting, still serving the requests they took
    own_web.signal(signal.SIGINT)
    wait_for(
        lambda: own_web.output().count("Worker exiting") == own_web.workers,
        timeout=10,
        what="every worker exiting",
    )
    time.sleep(0.5)
    sql.rollback()

    # Then each login is refused as busy, for the client to retry, not failed with a 500
    responses = [login.result(timeout=30) for login in logins]
    assert [response.status_code for response in responses] == [503] * 4
    assert all(response.headers["Retry-After"] == "1" for response in responses)
    assert all(response.json()["code"] == "service_unavailable" for response in responses)
    assert "Internal Server Error" not in own_web.output()
    assert own_web.wait(timeout=30) == 0
