"""The client's IP address as the trusted proxies in front of the app saw it."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The address the outermost trusted proxy received the request from.

    Each trusted proxy appends the address it was reached from to X-Forwarded-For, so only the
    last ``TRUSTED_PROXY_COUNT`` entries are written by someone we trust; anything to their left
    came from the client and is ignored. Without proxies (0) the socket's address is used.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if trusted == 0 or not hops:
        return _normalized(remote)
    # Fewer entries than proxies: the leftmost one was still written by a trusted proxy.
    return _normalized(hops[-min(trusted, len(hops))]) or _normalized(remote)


def _normalized(address: str) -> str:
    """One spelling per address (IPv6 compressed, IPv4-mapped unwrapped); '' if not an IP."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)
