"""Atomic request counters in Redis: the one module that talks to the raw Redis client.

Django's cache API has no atomic increment-with-expiry; a read-modify-write through it (as DRF's
SimpleRateThrottle does) lets concurrent requests overwrite each other's counts.
"""

import math

from django_redis import get_redis_connection

KEY_PREFIX = "auth:counter:"

# One round trip, run atomically by Redis: count the hit, start the window on the first hit,
# report how long the window has left. A key can never be left without an expiry.
_HIT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 or redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {hits, redis.call('PTTL', KEYS[1])}
"""


def window_hit(*, key: str, period: int) -> tuple[int, int]:
    """Count one hit for ``key`` in its window of ``period`` seconds.

    The window starts with the key's first hit. Returns the hits counted in the window so far
    (this one included) and the whole seconds until the window ends.
    """
    client = get_redis_connection("default")
    hits, ms_left = client.eval(_HIT, 1, f"{KEY_PREFIX}{key}", period * 1000)
    return int(hits), max(1, math.ceil(int(ms_left) / 1000))
