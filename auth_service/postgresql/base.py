"""Django's PostgreSQL backend with a health check that costs no round trip.

With persistent connections and CONN_HEALTH_CHECKS, Django checks a reused connection before
each request's first query with a ``SELECT 1``: one extra round trip on every request, a
seventh of the CPU of a `me` request. An idle connection whose server is alive has nothing to
read, while a server that restarted, crashed or ended the session has sent its goodbye (an
error message, or end of file). So the check looks for that instead of asking.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
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
        return not events
