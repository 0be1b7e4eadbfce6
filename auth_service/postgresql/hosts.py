"""Where a new connection goes: host names looked up by the service, stalled hosts passed over.

With deadline.py's wait callback installed, psycopg2 connects through libpq's non-blocking
calls, and those differ from the blocking connect in two ways that matter here:
- libpq looks up the host name inside them while psycopg2 holds Python's interpreter lock, so a
  slow DNS answer would stop every thread of the process, not only the one connecting. The
  service looks the names up first (Python releases the lock for that) and hands libpq the
  addresses as `hostaddr`; libpq still uses the name for TLS verification and the password file.
- libpq moves to the next host only when one fails, and enforces no connect_timeout of its own,
  so a host that is down without refusing (powered off, cut off, stopped) would end the whole
  connect at the deadline instead of passing to the next. The connect is tried again without
  the host it stalled on, as many times as there are hosts.
Everything else (refusals, authentication, target_session_attrs, load_balance_hosts) is
libpq's, on the addresses given.
"""

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    host: str  # a name, an IP address, or a Unix socket directory
    address: str  # "" where libpq resolves nothing (a Unix socket)
    port: str  # "" for the default


class NoAddress(Exception):
    """None of the host names could be looked up."""


def resolve(params: dict) -> list[Target] | None:
    """Each address to try, in libpq's order (a name's addresses in getaddrinfo's order, as
    libpq takes them), or None to leave the connect to libpq as configured: no host given
    (libpq's defaults and environment), or addresses already given."""
    if not params.get("host") or params.get("hostaddr"):
        return None
    hosts = str(params["host"]).split(",")
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:
        ports *= len(hosts)
    if len(ports) != len(hosts):
        return None  # libpq reports the mismatch
    targets, failures = [], []
    for host, port in zip(hosts, ports, strict=True):
        if host.startswith(("/", "@")):
            targets.append(Target(host, "", port))
            continue
        try:
            found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            failures.append(f'could not translate host name "{host}" to address: {error}')
            continue
        for address in dict.fromkeys(info[4][0] for info in found):
            targets.append(Target(host, address, port))
    if not targets:
        raise NoAddress("; ".join(failures))
    return targets


def connect_params(params: dict, targets: list[Target]) -> dict:
    """`params` pointed at `targets`."""
    pointed = {
        **params,
        "host": ",".join(t.host for t in targets),
        "hostaddr": ",".join(t.address for t in targets),
    }
    if any(t.port for t in targets):
        pointed["port"] = ",".join(t.port or _default_port() for t in targets)
    return pointed


def without(targets: list[Target], host: str, port: int | str) -> list[Target]:
    """`targets` less those of the host (name and port) a connect stalled on."""
    return [t for t in targets if (t.host, t.port or _default_port()) != (host, str(port))]


def _default_port() -> str:
    return os.environ.get("PGPORT") or "5432"  # libpq's
