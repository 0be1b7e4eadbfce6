"""The raw Redis client, for what the cache API cannot do: Lua scripts, exact key expiries.

Scripts run by digest (EVALSHA): a call sends 40 bytes instead of the script's source. A Redis
that has not seen a script yet (a new or restarted server) answers NOSCRIPT, and redis-py's
Script then loads it and runs it again.
"""

import functools

from django_redis import get_redis_connection
from redis import Redis
from redis.commands.core import Script


def client() -> Redis:
    """The cache's own connection pool, without the cache's key versioning or pickling."""
    return get_redis_connection("default")


@functools.cache
def _script(source: str) -> Script:
    # This client only encodes the source to compute its digest (it never connects); each call
    # runs the script on the client it is given.
    return Script(Redis(), source)


def run(client: Redis, source: str, keys: list, args: list):
    """Run the Lua `source` on `client` with these KEYS and ARGV."""
    return _script(source)(keys=keys, args=args, client=client)
