"""Logins past the hash pool's pending limit, through one real gunicorn worker.

gunicorn hands connections to its workers unevenly, so one worker may hold every connection
of a burst its threads can still serve: that is not refused. A burst larger than its threads
is: the requests queueing for a thread get quick 503s, so the queue drains.
"""

import http.client
import time

import pytest

from auth_service.tests.faults.harness import (
    PASSWORD,
    Client,
    WebServer,
    backends_waiting_on_lock,
    prepare,
    start,
)

THREADS = 6  # and so a pending limit of 4 (GUNICORN_THREADS - 2)


@pytest.fixture
def one_worker(service_env, tmp_path):
    env = {
        **service_env,
        "GUNICORN_THREADS": str(THREADS),
        "PASSWORD_HASH_THREADS": "1",
        "PASSWORD_HASH_SLOTS": "1",
    }
    prepare(env)
    web = WebServer(env=env, log=tmp_path / "gunicorn.log", workers=1)
    web.start()
    yield web
    web.stop()


def logins_at_once(web, sql, account, count: int) -> list:
    """Send ``count`` logins; hold them at the user table until the threads are all inside."""
    api = Client(web)
    with sql.cursor() as cursor:
        cursor.execute("LOCK TABLE accounts_user IN ACCESS EXCLUSIVE MODE")
    try:
        calls = [
            start(
                lambda: api.post(
                    "/api/v1/auth/login/", {"email": account.email, "password": PASSWORD}
                )
            )
            for _ in range(count)
        ]
        backends_waiting_on_lock(sql, min(count, THREADS))
        time.sleep(0.5)  # the rest connect and queue for a thread
    finally:
        sql.rollback()
    return [call.result(timeout=30) for call in calls]


def test_as_many_logins_as_threads_all_hash_though_past_the_pending_limit(one_worker, sql, account):
    responses = logins_at_once(one_worker, sql, account, THREADS)

    assert [response.status_code for response in responses] == [200] * THREADS
    assert "Service Unavailable" not in one_worker.output()


def test_idle_kept_alive_connections_do_not_make_a_worker_short_of_threads(
    one_worker, sql, account
):
    # A proxy (or a client) keeps idle connections open: they wait in gthread's poller
    idle = [http.client.HTTPConnection("127.0.0.1", one_worker.port, timeout=10) for _ in range(3)]
    try:
        for conn in idle:
            conn.request("GET", "/healthz")
            conn.getresponse().read()

        responses = logins_at_once(one_worker, sql, account, THREADS)
    finally:
        for conn in idle:
            conn.close()

    assert [response.status_code for response in responses] == [200] * THREADS


def test_logins_queueing_behind_busy_threads_get_a_quick_503(one_worker, sql, account):
    responses = logins_at_once(one_worker, sql, account, 3 * THREADS)

    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) == {200, 503}
    assert statuses.count(200) >= THREADS - 2
    refused = [response for response in responses if response.status_code == 503]
    assert all(response.headers["Retry-After"] == "1" for response in refused)
    assert all(response.json()["code"] == "service_unavailable" for response in refused)
    # Logged as the load shedding it is: a warning each, no error or traceback
    assert "password hashing busy: request refused" in one_worker.output()
    assert "Service Unavailable" not in one_worker.output()
    assert "Traceback" not in one_worker.output()
    # And once the burst is over, a login hashes again
    again = Client(one_worker).post(
        "/api/v1/auth/login/", {"email": account.email, "password": PASSWORD}
    )
    assert again.status_code == 200
