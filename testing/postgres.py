"""PostgreSQL URLs for the processes the tests and the benchmark start."""

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
