"""Several hosts in DATABASE_URL: one connect per host, in order.

With deadline.py's wait callback installed, psycopg2 connects through libpq's non-blocking
calls, and with several hosts in one connect those differ from the blocking connect twice:
- libpq looks up the first host's name as psycopg2 starts the connect, with Python's
  interpreter lock released, but every later host's inside the polls, with the lock held: a
  slow DNS answer there would stop every thread of the process, not only the one connecting
  (auth_service/tests/faults/test_dns.py).
- libpq moves to the next host only when one fails, and enforces no connect_timeout of its own,
  so a host that is down without refusing (powered off, cut off, stopped) would end the whole
  connect at the deadline instead of passing to the next.
So each host gets a connect of its own, in the URL's order: the first host of its connect, its
name looked up without the lock, and a deadline of its own. The error after the last host names
what each answered.

libpq's choices across hosts (target_session_attrs=prefer-standby, load_balance_hosts=random)
are left to libpq, with the two limits above. An authentication failure at one host no longer
stops the next from being tried (libpq's rule): the error names both. The addresses of one host
name share its deadline, as in libpq's own connect: one that stalls fails that host.
"""

import psycopg2

SHARED = {"target_session_attrs": "prefer-standby", "load_balance_hosts": "random"}


def attempts(params: dict) -> list[dict]:
    """The connects to try in turn: one per host of `params`, or `params` as they are."""
    hosts = str(params.get("host") or "").split(",")
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:
        ports *= len(hosts)
    if (
        len(hosts) < 2
        or len(ports) != len(hosts)  # libpq reports the mismatch
        or params.get("hostaddr")
        or any(params.get(name) == value for name, value in SHARED.items())
    ):
        return [params]
    return [_single(params, host, port) for host, port in zip(hosts, ports, strict=True)]


def _single(params: dict, host: str, port: str) -> dict:
    one = {**params, "host": host}
    if port:
        one["port"] = port
    else:
        one.pop("port", None)
    return one


def together(failures: list[psycopg2.OperationalError]) -> psycopg2.OperationalError:
    """One error for the failed connects: the only one as it is, or the last one's kind with
    every message."""
    if len(failures) == 1:
        return failures[0]
    return type(failures[-1])("\n".join(str(failure).strip() for failure in failures))
