"""Celery's Redis transport, with one Redis client per connection pool instead of one per call,
that rides out a Redis failover.

kombu builds a new `redis.Redis` for every message it publishes or acknowledges, and the
constructor fills a table of some 170 response callbacks each time: 14 % of the instructions
of a password-reset request (bench/README.md). A client is only a handle on the channel's
connection pool, so reusing one sends the same commands over the same connections. kombu
replaces the pool after a fork or a lost connection; the next call then makes a client for
the new pool.

When a Redis primary turns replica (a failover), it ends the worker's waiting BRPOP with an
"UNBLOCKED" error, and a replica refuses BRPOP as a write ("READONLY"). kombu treats both as
unrecoverable and the worker exits (celery/celery#7946); here they count as a lost connection,
so the worker reconnects until a primary answers.
"""

from contextlib import contextmanager

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError


class Channel(redis.Channel):
    _pool_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        pool = self.pool
        if self._pool_client is None or self._pool_client.connection_pool is not pool:
            self._pool_client = self._create_client()
        yield self._pool_client

    def _brpop_read(self, **options):
        try:
            return super()._brpop_read(**options)
        except ResponseError as error:
            # READONLY is among connection_errors (below) and handled by kombu itself.
            if not str(error).startswith("UNBLOCKED"):
                raise
            self.client.connection.disconnect()
            raise RedisConnectionError(f"Redis is no longer the primary: {error}") from error


class Transport(redis.Transport):
    Channel = Channel
    # Reconnecting writes too (kombu's restore lock), which a replica refuses until it is
    # promoted or the address points at the new primary: keep retrying instead of exiting.
    connection_errors = (*redis.Transport.connection_errors, ReadOnlyError)


class SocketTransport(Transport):
    """The same for a Redis reached through its socket (REDIS_URL's unix://), given kombu's
    socket://... URL. kombu reads a socket only from a redis+socket:// URL, and then takes the
    transport from that prefix, over this one. A transport that parses URLs is handed the
    URL whole; the channel connects to the socket it names, as kombu's own does."""

    can_parse_url = True
