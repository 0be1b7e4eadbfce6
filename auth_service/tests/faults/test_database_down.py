"""PostgreSQL is down, hangs or restarts: quick JSON 503s, then recovery without a restart."""

import time
from collections.abc import Iterator
from contextlib import closing, contextmanager

import psycopg2

from auth_service.tests.faults.harness import (
    PASSWORD,
    UNAVAILABLE,
    Blackhole,
    backends_waiting_on_lock,
    concurrently,
    start,
    wait_for,
)

# A refused connection fails at once; the margin covers a loaded 2-core CI machine.
PROMPT = 2.0
# A host that accepts but never answers costs the connect timeout (DB_CONNECT_TIMEOUT, 2 s).
CONNECT_TIMEOUT_BOUND = 2.0 + 2.0
# A server that stops running under open connections: the statement timeout (5 s) and a second.
QUERY_DEADLINE_BOUND = 5.0 + 1.0 + 2.0


def every_endpoint(api, account) -> dict:
    """One call to each database-backed endpoint, as a user with a session would make it."""
    credentials = {"email": account.email, "password": account.password}
    token = account.access
    return {
        "register": lambda: api.post(
            "/api/v1/auth/register/",
            {"full_name": "Alan Turing", "email": "alan@example.com", "password": account.password},
        ),
        "login": lambda: api.post("/api/v1/auth/login/", credentials),
        "refresh": lambda: api.post("/api/v1/auth/token/refresh/", {"refresh": account.refresh}),
        "logout": lambda: api.post(
            "/api/v1/auth/logout/", {"refresh": account.refresh}, token=token
        ),
        "me": lambda: api.get("/api/v1/auth/me/", token=token),
        "password change": lambda: api.post(
            "/api/v1/auth/password/change/",
            {"current_password": account.password, "new_password": "a brand new passphrase"},
            token=token,
        ),
    }


def outcome(response) -> tuple:
    return response.status_code, response.headers.get("Content-Type"), response.json()


def service_connections(postgres) -> int:
    with closing(psycopg2.connect(postgres.url())) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'auth_service' "
            "AND backend_type = 'client backend'"
        )
        return cursor.fetchone()[0]


def connect_every_worker(api, account, postgres) -> None:
    """Traffic until every gunicorn worker holds a persistent connection."""

    def all_workers_connected() -> bool:
        concurrently([lambda: api.get("/api/v1/auth/me/", token=account.access)] * 6)
        return service_connections(postgres) >= api.server.workers

    wait_for(all_workers_connected, timeout=20, what="a connection in every worker")


def test_every_endpoint_answers_json_503_quickly_while_postgres_is_down(api, account, postgres):
    # Given a user with a session, and then PostgreSQL goes away
    calls = every_endpoint(api, account)
    postgres.stop()

    # When they use the service
    responses = {name: call() for name, call in calls.items()}

    # Then every request gets the contract's 503 at once, not a 500 or a hang
    assert {name: outcome(r) for name, r in responses.items()} == {
        name: (503, "application/json", UNAVAILABLE) for name in calls
    }
    slow = {name: r.elapsed.total_seconds() for name, r in responses.items()}
    assert max(slow.values()) < PROMPT, slow
    # And the log tells operators which dependency failed
    assert "dependency unavailable: database (OperationalError)" in api.server.output()


def test_readyz_names_the_database_and_healthz_stays_up_while_postgres_is_down(api, postgres):
    postgres.stop()

    ready = api.get("/readyz")
    alive = api.get("/healthz")

    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "redis": "ok"},
    }
    assert ready.elapsed.total_seconds() < PROMPT
    # The process itself is fine: a liveness probe must not restart it over a database outage.
    assert alive.status_code == 200


@contextmanager
def hanging(postgres) -> Iterator[None]:
    """PostgreSQL's host accepts connections but never answers."""
    postgres.stop()
    hole = Blackhole(postgres.port)
    try:
        yield
    finally:
        hole.close()


@contextmanager
def stopped_running(postgres) -> Iterator[None]:
    """PostgreSQL's processes stop (a stalled disk, a paused host): its kernel still accepts
    connections and acknowledges every query, so no server-side or TCP timeout fires."""
    postgres.freeze()
    try:
        yield
    finally:
        postgres.thaw()


def users_then_readyz(outage, api, account) -> tuple[dict, object]:
    """Login, me and refresh at once (as real traffic would come), then /readyz, during the
    outage; each must be the contract's 503."""
    calls = every_endpoint(api, account)
    names = ["login", "me", "refresh"]
    with outage:
        responses = dict(zip(names, concurrently([calls[name] for name in names]), strict=True))
        ready = api.get("/readyz")
    assert {name: outcome(r) for name, r in responses.items()} == {
        name: (503, "application/json", UNAVAILABLE) for name in names
    }
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "unavailable"
    return responses, ready


def test_requests_get_503_within_the_connect_timeout_when_postgres_hangs(api, account, postgres):
    # When PostgreSQL's host accepts connections but never answers, users get a 503 after the
    # connect timeout instead of waiting forever
    responses, ready = users_then_readyz(hanging(postgres), api, account)

    slow = {name: r.elapsed.total_seconds() for name, r in [*responses.items(), ("ready", ready)]}
    assert max(slow.values()) < CONNECT_TIMEOUT_BOUND, slow


def test_requests_get_503_within_the_deadline_when_postgres_stops_running(api, account, postgres):
    # Given the workers' threads hold persistent connections
    connect_every_worker(api, account, postgres)

    # When PostgreSQL stops running, each request gets the contract's 503 within the service's
    # own deadline, not a hang...
    responses, ready = users_then_readyz(stopped_running(postgres), api, account)

    slow = {name: r.elapsed.total_seconds() for name, r in responses.items()}
    assert max(slow.values()) < QUERY_DEADLINE_BOUND, slow
    # ...and /readyz says so within the connect timeout, before a platform's probe gives up
    assert ready.elapsed.total_seconds() < CONNECT_TIMEOUT_BOUND
    # And once it runs again, the same processes serve users on new connections
    responses = concurrently([lambda: api.get("/api/v1/auth/me/", token=account.access)] * 12)
    assert [r.status_code for r in responses] == [200] * 12


def test_a_postgres_restart_behind_idle_persistent_connections_costs_no_request(
    api, account, postgres
):
    # Given every gunicorn worker holds a persistent connection
    connect_every_worker(api, account, postgres)

    # When PostgreSQL restarts while the service is idle (those connections are now dead)
    postgres.stop()
    postgres.start()

    # Then no request fails: each worker notices its dead connection and opens a new one
    responses = concurrently([lambda: api.get("/api/v1/auth/me/", token=account.access)] * 12)
    assert [r.status_code for r in responses] == [200] * 12


def test_service_recovers_without_restart_when_postgres_returns(api, account, postgres):
    # Given the service is answering 503 during an outage
    postgres.stop()
    assert api.get("/api/v1/auth/me/", token=account.access).status_code == 503

    # When PostgreSQL comes back
    postgres.start()

    # Then the same gunicorn serves users again
    login = api.post("/api/v1/auth/login/", {"email": account.email, "password": account.password})
    assert login.status_code == 200
    responses = concurrently([lambda: api.get("/readyz")] * 12)
    assert [r.status_code for r in responses] == [200] * 12


def test_a_request_in_flight_when_postgres_dies_gets_503_and_the_next_one_works(
    api, account, postgres, sql
):
    # Given a refresh is in flight, waiting inside PostgreSQL (the test holds a lock it needs)
    with sql.cursor() as cursor:
        cursor.execute("LOCK TABLE accounts_spentrefreshtoken IN EXCLUSIVE MODE")
    in_flight = start(lambda: api.post("/api/v1/auth/token/refresh/", {"refresh": account.refresh}))
    backends_waiting_on_lock(sql, 1)

    # When PostgreSQL dies under it and comes back
    postgres.stop()
    response = in_flight.result(timeout=15)
    postgres.start()

    # Then that request gets the contract's 503 and the following ones are served normally
    assert outcome(response) == (503, "application/json", UNAVAILABLE)
    responses = concurrently([lambda: api.get("/api/v1/auth/me/", token=account.access)] * 12)
    assert [r.status_code for r in responses] == [200] * 12


# DB_STATEMENT_TIMEOUT (5 s by default), plus a login's hash and a loaded machine's margin.
STATEMENT_TIMEOUT_BOUND = 5.0 + 3.0


def test_a_query_stuck_behind_a_lock_gets_503_after_the_statement_timeout(api, account, sql):
    # Given something holds a lock every account query needs (a migration, an open transaction)
    with sql.cursor() as cursor:
        cursor.execute("LOCK TABLE accounts_user IN ACCESS EXCLUSIVE MODE")
    credentials = {"email": account.email, "password": account.password}
    newcomer = {"full_name": "Ada Lovelace", "email": "ada@example.com", "password": PASSWORD}
    try:
        # When users log in and register meanwhile
        started = time.monotonic()
        responses = concurrently(
            [
                lambda: api.post("/api/v1/auth/login/", credentials),
                lambda: api.post("/api/v1/auth/register/", newcomer),
            ]
        )
        waited = time.monotonic() - started
    finally:
        sql.rollback()

    # Then each gets the contract's 503 once the statement timeout passes, not a hung request
    assert [outcome(r) for r in responses] == [(503, "application/json", UNAVAILABLE)] * 2
    assert waited < STATEMENT_TIMEOUT_BOUND
    # ...and once the lock is gone the same connections serve them
    assert api.post("/api/v1/auth/login/", credentials).status_code == 200
