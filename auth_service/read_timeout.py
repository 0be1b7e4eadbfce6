"""A deadline for receiving each request once it has started arriving.

gthread gives a new connection 5 s to send its first bytes, then reads the rest of the
request, headers and body, with no time limit: a client that sends half a request and stops
holds a request thread for good, and as many such clients as a worker has threads leave it
answering no one, the health check included. Each request now has REQUEST_READ_TIMEOUT
seconds from its first read to be received whole, however its bytes trickle in. Past that the
connection's reading side is shut and the request ends where it stopped: one still in its
headers is dropped, one in its body is answered as a body cut short (a 400,
auth_service/wsgi.py), and the connection is not kept alive. Bytes that arrived in time are still
read after the deadline, and the response is written without it.
"""

import contextlib
import logging
import socket
import time

from gunicorn.http.unreader import SocketUnreader

logger = logging.getLogger("gunicorn.error")


def install(worker, timeout: float) -> None:
    """Bound the reading of each request on this gthread worker by `timeout` seconds."""
    read = SocketUnreader.chunk
    handle = type(worker).handle

    def chunk(self, size_hint=None):
        deadline = getattr(self, "read_deadline", None)
        if deadline is None:
            deadline = self.read_deadline = time.monotonic() + timeout
        try:
            # Past the deadline only what has already arrived is taken (the app may have been
            # slow to read a body the client sent in time).
            self.sock.settimeout(max(deadline - time.monotonic(), 0))
            return read(self, size_hint)
        except (TimeoutError, BlockingIOError):
            logger.info("request not received within %s s; connection closed", timeout)
            with contextlib.suppress(OSError):  # already gone
                self.sock.shutdown(socket.SHUT_RD)
            return b""
        finally:
            # Blocking again: the response is written without the read's deadline.
            with contextlib.suppress(OSError):
                self.sock.settimeout(None)

    def handle_with_deadline(self, conn):
        # One request per call (the next on a kept-alive connection starts its own deadline).
        if conn.parser is not None:
            conn.parser.unreader.read_deadline = None
        return handle(self, conn)

    SocketUnreader.chunk = chunk
    type(worker).handle = handle_with_deadline
