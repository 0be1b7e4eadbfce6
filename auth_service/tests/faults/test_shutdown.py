"""Deploys and scale-downs send SIGTERM: work already in flight must still complete."""

import signal

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
