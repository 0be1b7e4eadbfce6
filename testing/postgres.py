"""PostgreSQL URLs for the processes the tests and the benchmark start, and a server that
never answers."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

from psycopg2.extensions import parse_dsn


def database_name(url: str) -> str:
    """The database a URL names, as libpq reads it."""
    return parse_dsn(url)["dbname"]


def with_database(url: str, name: str) -> str:
    """The same URL naming another database: user, password, host (or socket) and options kept.

    Not urllib's geturl(), which writes postgres:///db (a Unix socket) as postgres:/db, a URL
    libpq refuses.
    """
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}/{quote(name)}{query}"


@contextmanager
def silent_server() -> Iterator[int]:
    """A port whose kernel accepts connections that nothing ever answers (a stopped server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]
