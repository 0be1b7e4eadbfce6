"""The network path to PostgreSQL or Redis is lost: packets vanish, no connection is reset.

Unlike a stopped server, nothing tells the service its open connections are dead; without a
timeout on unacknowledged data a request would wait on TCP retransmissions for many minutes.
Each test puts its dependency in a network namespace of its own and cuts it off there.
"""

import pytest

from auth_service.tests.faults.harness import (
    PASSWORD,
    UNAVAILABLE,
    Client,
    PrivatePostgres,
    PrivateRedis,
    WebServer,
    Worker,
    concurrently,
    prepare,
    wait_for,
)

# DB_TCP_USER_TIMEOUT (unacknowledged data) + DB_CONNECT_TIMEOUT (the reconnect), + margin.
BOUND = 3.0 + 2.0 + 3.0


@pytest.fixture
def remote_postgres(netns):
    """A private PostgreSQL in a network namespace of its own, reached over a veth pair."""
    server = PrivatePostgres(host=netns.inside, netns=netns)
    try:
        server.start()
        server.create_database("auth_service")
        yield netns, server
    finally:
        netns.mend()
        server.destroy()


@pytest.fixture
def remote_web(remote_postgres, service_env, tmp_path):
    _, server = remote_postgres
    env = {**service_env, "DATABASE_URL": server.database_url}
    prepare(env)
    web = WebServer(env=env, log=tmp_path / "gunicorn.log")
    web.start()
    yield web
    web.stop()


def test_a_lost_network_path_gives_prompt_503s_and_heals_without_restart(
    remote_postgres, remote_web
):
    netns, _ = remote_postgres
    api = Client(remote_web)
    # Given a signed-in user, and the workers hold open connections to PostgreSQL
    credentials = {"email": "katherine@example.com", "password": PASSWORD}
    api.post("/api/v1/auth/register/", {"full_name": "Katherine Johnson", **credentials})
    access = api.post("/api/v1/auth/login/", credentials).json()["access"]
    me = lambda: api.get("/api/v1/auth/me/", token=access, timeout=30)  # noqa: E731
    assert [r.status_code for r in concurrently([me] * 6)] == [200] * 6

    # When the path to PostgreSQL is lost: every packet dropped, no connection reset
    netns.cut()
    responses = concurrently([me] * 3)

    # Then requests get the contract's 503 after bounded waits, instead of hanging for minutes
    assert [(r.status_code, r.json()) for r in responses] == [(503, UNAVAILABLE)] * 3
    slow = [r.elapsed.total_seconds() for r in responses]
    assert max(slow) < BOUND, slow

    # And when the path comes back, the same processes serve again
    netns.mend()
    wait_for(lambda: me().status_code == 200, timeout=20, what="me 200 after the path returned")
    assert [r.status_code for r in concurrently([me] * 6)] == [200] * 6


@pytest.fixture
def remote_redis(netns):
    """A private Redis in a network namespace of its own."""
    server = PrivateRedis(host=netns.inside, netns=netns)
    server.start()
    yield server
    netns.mend()
    server.destroy()


def test_web_and_worker_work_again_after_the_path_to_redis_was_lost(
    netns, remote_redis, service_env, account, smtp, tmp_path
):
    env = {
        **service_env,
        "REDIS_URL": remote_redis.url(0),
        "CELERY_BROKER_URL": remote_redis.url(0),
        **smtp.client_env(),
    }
    web = WebServer(env=env, log=tmp_path / "gunicorn.log")
    worker = Worker(env=env, log=tmp_path / "worker.log")
    try:
        web.start()
        worker.start()
        api = Client(web)
        forgot = lambda: api.post(  # noqa: E731
            "/api/v1/auth/password/forgot/", {"email": account.email}, timeout=30
        )
        # Given web and worker have working connections to Redis (one email went out)
        assert forgot().status_code == 202
        smtp.wait_for(1)

        # When the path to Redis is lost, and Redis is replaced meanwhile (a failover: the new
        # server knows nothing of the old connections, and no reset reaches the clients)
        netns.cut()
        outage = forgot()
        remote_redis.stop()
        remote_redis.start(wait=False)
        netns.mend()

        # Then reset requests during the loss got a prompt 503, and afterwards the same web
        # and worker processes deliver the next email
        assert (outage.status_code, outage.json()) == (503, UNAVAILABLE)
        assert outage.elapsed.total_seconds() < 3
        wait_for(lambda: forgot().status_code == 202, timeout=20, what="forgot 202")
        smtp.wait_for(2, timeout=90)
    finally:
        worker.kill_all()
        web.stop()
