"""Rolling-window rate counters in Redis, one Lua call per request whatever its limits.

Django's cache API has no atomic check-and-record; a read-modify-write through it (as DRF's
SimpleRateThrottle does) lets concurrent requests overwrite each other's counts. A fixed window
(one counter per period) would let twice the limit through across a window's edge: the whole
limit at the end of one window and again at the start of the next.
"""

import math
import os
from typing import NamedTuple

from auth_service import redis_client

KEY_PREFIX = "auth:counter:"

# Run atomically by Redis on its own clock (instances' clocks may differ), for each key: drop
# the hits older than its period, and see whether fewer than its limit remain. Only a request
# every limit allows is recorded, against each of them: a limit holds in every rolling period,
# a client that keeps knocking is let in again as its oldest hit ages out, and a request one
# limit refuses costs nothing under the others (an attacker whose own address is blocked
# cannot spend the login budget of the emails it names). A key expires a period after its
# newest hit and holds at most `limit` entries. Every key of a request goes in one call: a
# login counts against two limits, and a round trip each was a tenth of its Python time.
_HITS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local waits = {}
local refused = false
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local period = tonumber(ARGV[2 * i + 1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
    if redis.call('ZCARD', key) < limit then
        waits[i] = 0
    else
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        waits[i] = tonumber(oldest[2]) + period - now
        refused = true
    end
end
if not refused then
    for i, key in ipairs(KEYS) do
        redis.call('ZADD', key, now, ARGV[1])
        redis.call('PEXPIRE', key, tonumber(ARGV[2 * i + 1]))
    end
end
return waits
"""


class Hit(NamedTuple):
    """One request counted against one limit: at most `limit` per `period` seconds."""

    key: str
    limit: int
    period: int


def new_member() -> bytes:
    """A request's own entry in its counters: two hits in the same millisecond must not
    collapse into one, and a refund must take back this request's hit, no other."""
    return os.urandom(8)


def rolling_hits(hits: list[Hit], member: bytes | None = None) -> list[int]:
    """Record a hit for every key (as `member`, a new one if not given), unless any of them
    already had its limit in its last period: then for none.

    Returns, per hit, 0 if it was allowed, else the whole seconds until that key's oldest hit
    ages out and one more would be (at least 1).
    """
    if not hits:
        return []
    client = redis_client.client()
    keys = [f"{KEY_PREFIX}{hit.key}" for hit in hits]
    args = [member or new_member()]
    for hit in hits:
        args += [hit.limit, hit.period * 1000]
    ms_left = redis_client.run(client, _HITS, keys, args)
    return [max(1, math.ceil(ms / 1000)) if ms > 0 else 0 for ms in map(int, ms_left)]


def rolling_hit(*, key: str, limit: int, period: int) -> int:
    """rolling_hits for one key."""
    return rolling_hits([Hit(key, limit, period)])[0]


def refund(hits: list[Hit], member: bytes) -> None:
    """Take back the hits rolling_hits recorded as `member` (RedisError if Redis fails)."""
    client = redis_client.client()
    with client.pipeline(transaction=False) as pipe:
        for hit in hits:
            pipe.zrem(f"{KEY_PREFIX}{hit.key}", member)
        pipe.execute()
