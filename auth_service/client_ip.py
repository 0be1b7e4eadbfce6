"""The client's IP address as the trusted proxies in front of the app saw it."""

import functools
import ipaddress
from collections.abc import Mapping

from django.conf import settings
from django.http import HttpRequest

# Addresses no client on the internet arrives from: a platform's own internal proxies.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


def client_ip(request: HttpRequest) -> str:
    """The address the outermost trusted proxy received the request from (client_ip_of)."""
    return client_ip_of(request.META)


def client_ip_of(meta: Mapping[str, str]) -> str:
    """The address the outermost trusted proxy received the request from, by a request's META
    or a WSGI environ.

    Each trusted proxy appends the address it was reached from to X-Forwarded-For, so only the
    last ``TRUSTED_PROXY_COUNT`` entries are written by someone we trust; anything to their left
    came from the client and is ignored. Without proxies (0) the socket's address is used.
    With ``TRUSTED_PROXY_SKIP_PRIVATE``, private addresses at the right end are the platform's
    internal hops, appended after the counted proxies, and are dropped before counting.
    """
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    # Only headers a proxy chain writes are remembered: the cache is bounded by entries, not
    # bytes, and a client padding its own part of the header (gunicorn joins up to 100 headers
    # of 8 KB) would make each entry hold all of it, gigabytes per worker.
    resolve = _resolved if len(forwarded) <= FORWARDED_CACHED_MAX else _resolve
    return resolve(
        meta.get("REMOTE_ADDR", ""),
        forwarded,
        settings.TRUSTED_PROXY_COUNT,
        settings.TRUSTED_PROXY_SKIP_PRIVATE,
    )


# Several proxies' IPv6 addresses, and a few the client wrote, fit with room to spare.
FORWARDED_CACHED_MAX = 512


def _resolve(remote: str, forwarded: str, trusted: int, skip_private: bool) -> str:
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if skip_private:
        while hops and _is_private(hops[-1]):
            hops.pop()
    if trusted == 0 or not hops:
        return _normalized(remote)
    # Fewer entries than proxies: the leftmost one was still written by a trusted proxy.
    return _normalized(hops[-min(trusted, len(hops))]) or _normalized(remote)


# Parsing the addresses costs about 9 µs, 2 % of a `me`, for every access line; a client sends
# the same headers request after request. A client varying them only misses the cache.
_resolved = functools.lru_cache(maxsize=4096)(_resolve)


def _is_private(address: str) -> bool:
    normalized = _normalized(address)
    if not normalized:
        return False
    ip = ipaddress.ip_address(normalized)
    return any(ip in network for network in PRIVATE_NETWORKS if network.version == ip.version)


def _normalized(address: str) -> str:
    """One spelling per address (IPv6 compressed, IPv4-mapped unwrapped); '' if not an IP."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)
