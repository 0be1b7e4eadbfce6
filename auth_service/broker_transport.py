"""Celery's Redis transport, with one Redis client per connection pool instead of one per call.

kombu builds a new `redis.Redis` for every message it publishes or acknowledges, and the
constructor fills a table of some 170 response callbacks each time: 14 % of the instructions
of a password-reset request (bench/README.md). A client is only a handle on the channel's
connection pool, so reusing one sends the same commands over the same connections. kombu
replaces the pool after a fork or a lost connection; the next call then makes a client for
the new pool.
"""

from contextlib import contextmanager

from kombu.transport import redis


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


class Transport(redis.Transport):
    Channel = Channel
