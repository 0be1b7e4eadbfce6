"""Several hosts in DATABASE_URL: a connect of its own for each, a stalled host passed over for
the next (auth_service/postgresql/hosts.py), against the test database."""

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


def test_every_host_stalling_is_a_database_error_naming_each_after_its_timeout():
    with (
        silent_server() as first,
        silent_server() as second,
        wrapper(HOST="127.0.0.1,127.0.0.1", PORT=f"{first},{second}") as db,
    ):
        started = time.monotonic()
        with pytest.raises(OperationalError) as failure:
            db.ensure_connection()

    assert 3.9 < time.monotonic() - started < 7
    assert f'"127.0.0.1", port {first}, did not answer within 2 s' in str(failure.value)
    assert f'"127.0.0.1", port {second}, did not answer within 2 s' in str(failure.value)


def test_a_host_name_that_does_not_resolve_is_passed_over():
    host, port = real_host()
    with wrapper(HOST=f"no-such-host.invalid,{host}", PORT=port) as db:
        assert answers(db)


def test_the_error_after_every_host_failed_says_what_each_answered():
    with (
        silent_server() as silent,
        wrapper(HOST="no-such-host.invalid,127.0.0.1", PORT=f"5432,{silent}") as db,
        pytest.raises(OperationalError) as failure,
    ):
        db.ensure_connection()

    assert 'could not translate host name "no-such-host.invalid"' in str(failure.value)
    assert f"port {silent}, did not answer" in str(failure.value)


def test_each_host_gets_a_connect_of_its_own_unless_libpq_must_choose_among_them():
    params = {"dbname": "d", "host": "a,b,/run/postgresql", "port": "5433"}
    assert [(one["host"], one["port"]) for one in hosts.attempts(params)] == [
        ("a", "5433"),
        ("b", "5433"),
        ("/run/postgresql", "5433"),
    ]
    no_ports = hosts.attempts({"host": "a,b"})
    assert no_ports == [{"host": "a"}, {"host": "b"}]  # libpq's default port (PGPORT, 5432)
    assert hosts.attempts({"host": "a,b", "port": "1,2"})[1] == {"host": "b", "port": "2"}
    for whole in (
        {"host": "a"},
        {},  # libpq's defaults and PG* environment
        {"host": "a,b,c", "port": "1,2"},  # libpq's own error
        {"host": "a,b", "target_session_attrs": "prefer-standby"},
        {"host": "a,b", "load_balance_hosts": "random"},
    ):
        assert hosts.attempts(whole) == [whole]
