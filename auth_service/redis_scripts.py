"""Lua scripts run by digest (EVALSHA): a call sends 40 bytes instead of the script's source.

A Redis that has not seen a script yet (a new or restarted server) answers NOSCRIPT, and
redis-py's Script then loads it and runs it again.
"""

import functools

from redis import Redis
from redis.commands.core import Script


@functools.cache
def _script(source: str) -> Script:
    # This client only encodes the source to compute its digest (it never connects); each call
    # runs the script on the client it is given.
    return Script(Redis(), source)


def run(client: Redis, source: str, keys: list, args: list):
    """Run the Lua `source` on `client` with these KEYS and ARGV."""
    return _script(source)(keys=keys, args=args, client=client)
