"""Writes whose answer from PostgreSQL was lost: applied or not?

PostgreSQL can apply a statement or a COMMIT and lose the connection before its answer reaches
the service. The client would then hear 503 for something that happened, and its retry fail
("email already taken", "token spent"). Each write that can tell its own row apart (a salted
password hash, the id a spent refresh token records) looks for it on a fresh connection.

Only a lost answer leaves that doubt: a statement PostgreSQL cancelled (its timeout) or refused
comes with an SQLSTATE and was not applied; a server that did not answer in time would keep a
lookup waiting too. A server ending the session (shut down, crashed) may have committed just
before: psycopg2 reports its FATAL with the lost connection and no SQLSTATE, so it counts as lost.
"""

from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, connection

from auth_service.postgresql.deadline import DeadlinePassed

T = TypeVar("T")


def refused(error: DatabaseError) -> bool:
    """Whether PostgreSQL answered the write with an error of its own (an SQLSTATE: read-only,
    a statement or lock timeout): then it was not applied, and the connection still works."""
    return getattr(error.__cause__ or error, "pgcode", None) is not None


def applied_after_all(error: DatabaseError, lookup: Callable[[], T]) -> T | None:
    """What `lookup` finds on a fresh connection after a write failed with `error`; None where
    the write cannot have been applied or the lookup cannot answer: PostgreSQL answered with an
    error of its own (an SQLSTATE), no connection was made, the write ran inside an outer
    transaction (nothing was committed yet), the server did not answer in time (a fresh
    connection would wait on it again), or the lookup fails too."""
    cause = error.__cause__ or error
    if (
        refused(error)
        or isinstance(cause, DeadlinePassed)
        or connection.connection is None
        or connection.in_atomic_block
    ):
        return None
    connection.close()
    try:
        return lookup()
    except DatabaseError:
        return None
