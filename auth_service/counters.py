"""Rolling-window rate counters in Redis: the one module that talks to the raw Redis client.

Django's cache API has no atomic check-and-record; a read-modify-write through it (as DRF's
SimpleRateThrottle does) lets concurrent requests overwrite each other's counts. A fixed window
(one counter per period) would let twice the limit through across a window's edge: the whole
limit at the end of one window and again at the start of the next.
"""

import math
import os

from django_redis import get_redis_connection

KEY_PREFIX = "auth:counter:"

# One round trip, run atomically by Redis on its own clock (instances' clocks may differ): drop
# the hits older than the period, and record this one if fewer than the limit remain. Only
# allowed hits are recorded, so the limit holds in every rolling period and a client that keeps
# knocking is let in again as its oldest hit ages out. The key expires a period after the
# newest hit and holds at most `limit` entries.
_HIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local period = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], period)
    return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(oldest[2]) + period - now
"""


def rolling_hit(*, key: str, limit: int, period: int) -> int:
    """Record one hit for ``key`` unless it already had ``limit`` in the last ``period`` seconds.

    Returns 0 if the hit was allowed, else the whole seconds until the oldest hit ages out and
    one more would be (at least 1).
    """
    client = get_redis_connection("default")
    # A unique member per hit: two hits in the same millisecond must not collapse into one.
    ms_left = int(client.eval(_HIT, 1, f"{KEY_PREFIX}{key}", limit, period * 1000, os.urandom(8)))
    return max(1, math.ceil(ms_left / 1000)) if ms_left > 0 else 0
