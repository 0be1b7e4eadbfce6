"""The service's own deadline on waits for PostgreSQL (auth_service/postgresql/deadline.py),
against the test database and listeners that never answer."""

import socket
import time

import psycopg2
import pytest
from django.db import connection

from auth_service.postgresql import deadline
from testing.postgres import silent_server

pytestmark = pytest.mark.django_db


def connect(**overrides):
    params = connection.get_connection_params()
    return psycopg2.connect(**{**params, **overrides})


def test_a_server_that_never_answers_a_connection_is_given_up_on_after_the_connect_timeout():
    with silent_server() as port:
        started = time.monotonic()
        with pytest.raises(deadline.DeadlinePassed):
            connect(host="127.0.0.1", port=port, connect_timeout=2)

    assert 1.9 < time.monotonic() - started < 4


def test_a_host_of_several_that_refuses_is_passed_over_for_the_next():
    real = connection.get_connection_params()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = closed.getsockname()[1]
        conn = connect(
            host=f"127.0.0.1,{real.get('host', '127.0.0.1')}",
            port=f"{port},{real.get('port', 5432)}",
            connect_timeout=2,
        )

    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    conn.close()


def test_a_health_check_limit_nests_inside_another():
    with deadline.bounded(5):
        with deadline.bounded(1):
            pass
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
