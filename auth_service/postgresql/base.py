"""Django's PostgreSQL backend with a health check that costs no round trip.

With persistent connections and CONN_HEALTH_CHECKS, Django checks a reused connection before
each request's first query with a ``SELECT 1``: one extra round trip on every request, a
seventh of the CPU of a `me` request. An idle connection whose server is alive has nothing to
read, while a server that restarted or ended the session has sent its goodbye (an error
message, or end of file). So the check looks for that instead of asking.

A server that vanished without a goodbye (its host crashed, the network path was lost) leaves
nothing to read either, and TCP keepalives notice only after some 45 s. So a connection idle
for longer than IDLE_CHECK_AFTER is asked after all: its request then reconnects instead of
failing on the dead connection. Busy connections, reused within milliseconds, keep the free
check; a quiet server pays the round trip, when it has the time.

Every wait for the server has a deadline of the client's own (deadline.py), installed when
this backend loads; with several hosts, each gets a connect of its own (hosts.py).
"""

import select
import time

import psycopg2
from django.conf import settings
from django.db.backends.postgresql import base

from auth_service.postgresql import deadline, hosts

IDLE_CHECK_AFTER = 5.0  # seconds
IDLE_CHECK_LIMIT = 1.0  # seconds

deadline.install(
    connect=settings.DATABASES["default"].get("OPTIONS", {}).get("connect_timeout"),
    query=getattr(settings, "DB_QUERY_DEADLINE", None),
)


class DatabaseWrapper(base.DatabaseWrapper):
    _checked_at = 0.0

    def connect(self) -> None:
        super().connect()
        self._checked_at = time.monotonic()

    def get_new_connection(self, conn_params):
        failures = []
        for params in hosts.attempts(conn_params):
            try:
                return super().get_new_connection(params)
            except psycopg2.OperationalError as failure:
                failures.append(failure)
        raise hosts.together(failures)

    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed:
            return False
        # poll, not select: select fails on descriptors above 1023, which a busy process can reach.
        poller = select.poll()
        try:
            poller.register(self.connection.fileno(), select.POLLIN)
            events = poller.poll(0)
        except (OSError, ValueError):
            return False
        # The service never LISTENs, so anything waiting on an idle connection means it is gone.
        if events:
            return False
        now, checked_at = time.monotonic(), self._checked_at
        self._checked_at = now
        if now - checked_at <= IDLE_CHECK_AFTER:
            return True
        # A server that takes a second to answer SELECT 1 is treated as gone: the request then
        # pays at most that and a new connection's timeout (/readyz included) before its 503.
        with deadline.bounded(IDLE_CHECK_LIMIT):
            return super().is_usable()
