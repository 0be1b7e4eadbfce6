"""The database backend's check of a reused connection: free when busy, a round trip when idle."""

import time
from unittest import mock

import pytest
from django.db import connection
from django.db.backends.postgresql import base

from auth_service.postgresql.base import IDLE_CHECK_AFTER

pytestmark = pytest.mark.django_db


@pytest.fixture
def round_trips():
    """Each time the check asks the server (Django's own SELECT 1)."""
    with mock.patch.object(base.DatabaseWrapper, "is_usable", return_value=True) as asked:
        yield asked


def test_a_connection_reused_at_once_is_checked_without_a_round_trip(round_trips):
    connection.ensure_connection()
    connection._checked_at = time.monotonic()  # however long ago the test's connection opened

    assert connection.is_usable()
    assert connection.is_usable()
    assert round_trips.call_count == 0


def test_a_connection_idle_for_a_while_is_asked_whether_the_server_is_still_there(round_trips):
    connection.ensure_connection()
    connection._checked_at -= IDLE_CHECK_AFTER + 1

    assert connection.is_usable()
    assert round_trips.call_count == 1
    # and it counts as fresh again
    assert connection.is_usable()
    assert round_trips.call_count == 1


def test_an_idle_connection_whose_server_is_gone_is_not_usable(round_trips):
    round_trips.return_value = False
    connection.ensure_connection()
    connection._checked_at -= IDLE_CHECK_AFTER + 1

    assert not connection.is_usable()
