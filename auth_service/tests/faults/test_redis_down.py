"""Redis is down or hangs: sessions keep working, Redis-backed features say 503, all recover.

"Stopped" is a crashed server (connections refused at once); "frozen" is a server that accepts
connections but never answers, where only the client's socket timeouts stop a request hanging.
"""

import time

import pytest

from auth_service.tests.faults.harness import (
    UNAVAILABLE,
    Client,
    PrivateRedis,
    WebServer,
    Worker,
    concurrently,
    link_token,
    wait_for,
)

# The service's Redis timeouts are 1 s; the margin covers a loaded 2-core CI machine.
PROMPT = 3.0
NEW_PASSWORD = "a brand new passphrase"


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
def test_accounts_and_sessions_keep_working_while_redis_is_down(api, account, redis_server, how):
    # Given a signed-up user and an outage of Redis
    break_redis(redis_server, how)

    # When people sign up, log in, refresh their session, ask who they are and log out
    newcomer = f"new-{how}-{account.email}"
    registered = api.post(
        "/api/v1/auth/register/",
        {"full_name": "Mary Jackson", "email": newcomer, "password": account.password},
    )
    login = api.post("/api/v1/auth/login/", {"email": account.email, "password": account.password})
    refreshed = api.post("/api/v1/auth/token/refresh/", {"refresh": account.refresh})
    me = api.get("/api/v1/auth/me/", token=account.access)
    logout = api.post(
        "/api/v1/auth/logout/", {"refresh": login.json()["refresh"]}, token=account.access
    )

    # Then all of it works: rate limiting fails open instead of locking everyone out
    responses = (registered, login, refreshed, me, logout)
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 204]
    assert me.json()["email"] == account.email
    slow = [r.elapsed.total_seconds() for r in responses]
    assert max(slow) < PROMPT, slow


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_password_reset_answers_json_503_quickly_while_redis_is_down(
    api, account, redis_server, how
):
    # Given Redis, which holds reset tokens and the email queue, is out
    break_redis(redis_server, how)

    # When someone asks for a reset link, or uses one
    forgot = api.post("/api/v1/auth/password/forgot/", {"email": account.email})
    reset = api.post("/api/v1/auth/password/reset/", {"token": "0" * 64, "password": NEW_PASSWORD})

    # Then both get the contract's 503 promptly instead of a false promise or a hang
    for response in (forgot, reset):
        assert response.status_code == 503
        assert response.json() == UNAVAILABLE
        assert response.elapsed.total_seconds() < PROMPT
    assert "dependency unavailable: redis" in api.server.output()


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_password_change_holds_and_its_notice_still_arrives_while_redis_is_down(
    web, api, make_account, redis_server, start_worker, smtp, how
):
    # Given a running worker that sweeps up left-behind notices every second...
    users = [make_account() for _ in range(web.workers)]
    start_worker(NOTICE_SWEEP_INTERVAL="1", NOTICE_SWEEP_AFTER="1")
    # ...every gunicorn worker has published to the broker (its connection is open)...
    concurrently(
        [
            lambda n=n: api.post("/api/v1/auth/password/forgot/", {"email": f"{n}@example.org"})
            for n in range(web.workers * 3)
        ]
    )
    # ...and then Redis, the broker, goes out, so "password changed" emails cannot be queued
    break_redis(redis_server, how)

    # When users change their passwords (at once: one request per gunicorn worker)
    changes = concurrently(
        [
            lambda u=u: api.post(
                "/api/v1/auth/password/change/",
                {"current_password": u.password, "new_password": NEW_PASSWORD},
                token=u.access,
            )
            for u in users
        ]
    )

    # Then the changes are done promptly, and the new passwords work. A change asks Redis three
    # things (its rate limit, which fails open; ending an emailed reset link; queuing the
    # notice), and a frozen Redis makes each wait out its 1 s timeout.
    assert [r.status_code for r in changes] == [204] * len(users)
    slow = [r.elapsed.total_seconds() for r in changes]
    assert max(slow) < PROMPT + (1.0 if how == "frozen" else 0.0), slow
    login = api.post("/api/v1/auth/login/", {"email": users[0].email, "password": NEW_PASSWORD})
    assert login.status_code == 200
    # And each user is told, once, though Redis is still out: the worker's sweep sends the
    # notices the web recorded in PostgreSQL
    notices = smtp.wait_for(len(users), timeout=30)
    assert sorted(m["To"] for m in notices) == sorted(u.email for u in users)
    assert {m["Subject"] for m in notices} == {"Your password was changed"}
    time.sleep(3)  # three more sweeps
    assert len(smtp.messages) == len(users)


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
def test_service_recovers_without_restart_when_redis_returns(api, account, redis_server, how):
    # Given the service noticed the outage
    break_redis(redis_server, how)
    assert api.get("/readyz").status_code == 503

    # When Redis comes back
    mend_redis(redis_server, how)

    # Then every gunicorn worker is ready and takes reset requests again, without a restart
    wait_for(lambda: api.get("/readyz").status_code == 200, timeout=10, what="readyz 200")
    ready = concurrently([lambda: api.get("/readyz")] * 9)
    forgot = concurrently(
        [lambda: api.post("/api/v1/auth/password/forgot/", {"email": account.email})] * 9
    )
    assert [r.status_code for r in ready + forgot] == [200] * 9 + [202] * 9


@pytest.fixture
def own_broker():
    """A Redis that is only the email queue, apart from the one holding reset tokens."""
    server = PrivateRedis()
    server.start()
    yield server
    server.destroy()


def test_a_forgot_whose_email_cannot_be_queued_keeps_the_link_already_sent(
    service_env, own_broker, account, smtp, tmp_path
):
    env = {**service_env, **smtp.client_env(), "CELERY_BROKER_URL": own_broker.url(0)}
    web = WebServer(env=env, log=tmp_path / "gunicorn.log", workers=1)
    worker = Worker(env=env, log=tmp_path / "worker.log")
    try:
        web.start()
        worker.start()
        api = Client(web)
        forgot = lambda: api.post("/api/v1/auth/password/forgot/", {"email": account.email})  # noqa: E731
        # Given a reset link in the user's inbox
        assert forgot().status_code == 202
        (message,) = smtp.wait_for(1)

        # When the email queue is out (the token store is not) and the user asks again
        own_broker.stop()
        again = forgot()

        # Then that request gets the contract's 503, and the link the user has still works
        assert (again.status_code, again.json()) == (503, UNAVAILABLE)
        body = {"token": link_token(message), "password": NEW_PASSWORD}
        assert api.post("/api/v1/auth/password/reset/", body).status_code == 200
        login = {"email": account.email, "password": NEW_PASSWORD}
        assert api.post("/api/v1/auth/login/", login).status_code == 200
    finally:
        worker.kill_all()
        web.stop()


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_readyz_names_a_broker_of_its_own_while_it_is_down(service_env, own_broker, tmp_path, how):
    env = {**service_env, "CELERY_BROKER_URL": own_broker.url(0)}
    web = WebServer(env=env, log=tmp_path / "gunicorn.log", workers=1)
    try:
        web.start()
        api = Client(web)
        # Given a service whose email queue is a Redis of its own, and checked as such
        ready = api.get("/readyz")
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}

        # When that Redis goes out (REDIS_URL's does not)
        break_redis(own_broker, how)
        response = api.get("/readyz")

        # Then /readyz names it, before a platform's probe gives up, and recovers with it
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "checks": {"database": "ok", "redis": "ok", "broker": "unavailable"},
        }
        assert response.elapsed.total_seconds() < PROMPT
        mend_redis(own_broker, how)
        wait_for(lambda: api.get("/readyz").status_code == 200, timeout=10, what="readyz 200")
    finally:
        web.stop()
