"""New connections: host names looked up by the service, a stalled host passed over for the
next (auth_service/postgresql/hosts.py), against the test database."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import OperationalError, connection, connections

from auth_service.postgresql import hosts
from testing.postgres import silent_server

pytestmark = pytest.mark.django_db


@contextmanager
def wrapper(**settings) -> Iterator:
    """A second connection to the test database, with its own HOST and PORT."""
    other = type(connections["default"])({**connection.settings_dict, **settings}, alias="hosts")
    try:
        yield other
    finally:
        other.close()


def real_host() -> tuple[str, str]:
    params = connection.get_connection_params()
    return params.get("host") or "127.0.0.1", str(params.get("port") or 5432)


def answers(db) -> bool:
    with db.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


def test_a_host_that_stalls_is_passed_over_for_the_next_after_the_connect_timeout():
    host, port = real_host()
    with (
        silent_server() as silent,
        wrapper(HOST=f"127.0.0.1,{host}", PORT=f"{silent},{port}") as db,
    ):
        started = time.monotonic()
        assert answers(db)

    assert 1.9 < time.monotonic() - started < 4


def test_every_host_stalling_is_a_database_error_after_each_ones_timeout():
    with (
        silent_server() as first,
        silent_server() as second,
        wrapper(HOST="127.0.0.1,127.0.0.1", PORT=f"{first},{second}") as db,
    ):
        started = time.monotonic()
        with pytest.raises(OperationalError, match="did not answer"):
            db.ensure_connection()

    assert 3.9 < time.monotonic() - started < 7


def test_host_names_reach_libpq_as_addresses_looked_up_beforehand():
    # libpq would look the name up while holding the interpreter lock (hosts.py).
    _, port = real_host()
    with wrapper(HOST="localhost", PORT=port) as db:
        assert answers(db)
        used = db.connection.info.dsn_parameters

    assert used["host"] == "localhost"
    assert used["hostaddr"] in {"127.0.0.1", "::1"}


def test_a_host_name_that_does_not_resolve_is_passed_over():
    host, port = real_host()
    with wrapper(HOST=f"no-such-host.invalid,{host}", PORT=port) as db:
        assert answers(db)


def test_no_host_name_resolving_is_a_database_error_naming_them():
    with (
        wrapper(HOST="no-such-host.invalid", PORT="5432") as db,
        pytest.raises(OperationalError, match='"no-such-host.invalid"'),
    ):
        db.ensure_connection()


def test_unix_sockets_ports_and_libpq_defaults_are_kept():
    assert hosts.resolve({"host": "/run/postgresql,127.0.0.1", "port": "5433"}) == [
        hosts.Target("/run/postgresql", "", "5433"),
        hosts.Target("127.0.0.1", "127.0.0.1", "5433"),
    ]
    assert hosts.resolve({"host": "127.0.0.1,127.0.0.2", "port": "5433,5434"}) == [
        hosts.Target("127.0.0.1", "127.0.0.1", "5433"),
        hosts.Target("127.0.0.2", "127.0.0.2", "5434"),
    ]
    assert hosts.resolve({}) is None  # libpq's defaults and PG* environment
    assert hosts.resolve({"host": "h", "hostaddr": "10.0.0.1"}) is None
    assert hosts.resolve({"host": "a,b,c", "port": "1,2"}) is None  # libpq's own error
    params = hosts.connect_params(
        {"dbname": "d"}, [hosts.Target("/run/postgresql", "", ""), hosts.Target("h", "::1", "")]
    )
    assert params == {"dbname": "d", "host": "/run/postgresql,h", "hostaddr": ",::1"}


def test_a_stalled_host_on_the_default_port_is_matched_with_pgport_set(monkeypatch):
    monkeypatch.setenv("PGPORT", "6543")
    targets = [hosts.Target("h1", "10.0.0.1", ""), hosts.Target("h2", "10.0.0.2", "")]

    assert hosts.without(targets, "h1", 6543) == [hosts.Target("h2", "10.0.0.2", "")]
