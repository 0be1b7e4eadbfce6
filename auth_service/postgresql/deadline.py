"""A deadline on every wait for PostgreSQL, kept by the client.

The server-side limits (statement_timeout) and the socket's (tcp_user_timeout, keepalives)
need a server that runs or a network path that fails. A server that is up but does not run
(its processes stopped, its storage stalled) still has its kernel accept and acknowledge
everything: a query on a persistent connection, or a new connection's start-up, would wait
for as long as it stays so, holding a request thread, and /readyz with it.

psycopg2 calls a wait callback, when one is installed, instead of blocking inside libpq. This
one waits for the socket with a deadline, and past it raises OperationalError, which makes
psycopg2 close the connection: the request gets the contract's 503 and the thread's next
request opens a new connection. Measured: a `SELECT 1` costs the same either way.

The callback holds for the whole process (web, worker, manage.py). Under it psycopg2 refuses
COPY (`copy_from`, `copy_to`, `copy_expert`) and large objects, which the service does not use;
a data migration that needs them would remove it first
(`extensions.set_wait_callback(None)`; manage.py runs one thread). Connecting this way also
changes how libpq treats several hosts: hosts.py.
"""

import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from psycopg2 import extensions

_IN_USE = (extensions.STATUS_READY, extensions.STATUS_BEGIN, extensions.STATUS_PREPARED)
_EVENTS = {extensions.POLL_READ: select.POLLIN, extensions.POLL_WRITE: select.POLLOUT}

_limits = {"connect": None, "query": None}


class DeadlinePassed(psycopg2.OperationalError):
    """PostgreSQL did not answer in time; the connection is closed."""


_override = threading.local()
_UNSET = object()


def install(*, connect: float | None, query: float | None) -> None:
    """Bound each wait: `connect` seconds for a new connection and its set-up, `query` for a
    statement's round trip (None: no bound)."""
    _limits.update(connect=connect, query=query)
    extensions.set_wait_callback(wait)


@contextmanager
def bounded(seconds: float | None) -> Iterator[None]:
    """Statements of this thread inside the block wait at most `seconds` (a health check)."""
    outer = getattr(_override, "query", _UNSET)
    _override.query = seconds
    try:
        yield
    finally:
        if outer is _UNSET:
            del _override.query
        else:
            _override.query = outer


def _limit(conn) -> float | None:
    if conn.status not in _IN_USE:
        # libpq's own rule for connect_timeout: at least 2 s, for each address it tries.
        connect = _limits["connect"]
        return None if connect is None else max(connect, 2)
    return getattr(_override, "query", _limits["query"])


def wait(conn, cursor=None) -> None:
    """psycopg2's wait callback: drive the connection until its call completes, or give up."""
    waiting = _Wait()
    while True:
        try:
            if waiting.done(conn):
                return
        except KeyboardInterrupt:
            # Ctrl-C under manage.py: cancel the statement on the server too and take its
            # error, as psycopg2's own wait_select does, rather than leave it running there.
            conn.cancel()


class _Wait:
    """One call's wait, with its deadline."""

    def __init__(self) -> None:
        self.socket = self.limit = None
        self.deadline = float("inf")

    def done(self, conn) -> bool:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return True
        events = _EVENTS.get(state)
        if events is None:
            raise psycopg2.OperationalError(f"unexpected state from poll(): {state}")
        if self.socket != conn.fileno():
            # The deadline starts with the call's first socket. libpq moving on to the next
            # address (after one refused) usually reuses the descriptor's number, so the
            # addresses of one connect share its deadline (hosts.py gives each host its own).
            self.socket = conn.fileno()
            self.limit = _limit(conn)
            if self.limit is not None:
                self.deadline = time.monotonic() + self.limit
        poller = select.poll()  # not select(): descriptors above 1023 are possible
        poller.register(self.socket, events)
        left = self.deadline - time.monotonic()
        if left == float("inf"):
            poller.poll()
        elif left <= 0 or not poller.poll(left * 1000):
            server = "PostgreSQL"
            if conn.status not in _IN_USE:  # connecting: name the host, as libpq's errors do
                server = f'PostgreSQL at "{conn.info.host}", port {conn.info.port},'
            raise DeadlinePassed(f"{server} did not answer within {self.limit:g} s")
        return False
