"""The store's errors, and which database errors are worth trying again.

StoreError           base
  SchemaMismatch     the database is not at the schema version this Stepline needs
  PoolBusy           no connection of a pool came free within the time a caller allows

``is_transient`` tells what asyncpg (and the network under it) raises while Postgres restarts, fails over,
terminates a backend or breaks a deadlock: the same statement succeeds once the database is back, so the
gateway's loops and the operator retry those with backoff instead of giving up.
"""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions import UnsupportedClientFeatureError


class StoreError(Exception):
    """Base of the store's own errors."""


class SchemaMismatch(StoreError):
    """The database schema is older or newer than this Stepline."""


class PoolBusy(StoreError):
    """Every connection of a bounded pool stayed in use for as long as the caller would wait: nothing ran."""


_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, a unix socket gone during a restart (ConnectionError is one)
    TimeoutError,  # connect and command timeouts
    asyncpg.PostgresConnectionError,  # ConnectionDoesNotExistError, ConnectionFailureError, ...
    asyncpg.InterfaceError,  # "the connection is closed" and its kin, on a connection that just died
    # "cannot switch to state ...; another operation is in progress": the protocol's state after the server
    # ended the connection in the middle of a transaction (seen on pg_terminate_backend).
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.AdminShutdownError,  # pg_terminate_backend, a fast shutdown
    asyncpg.CrashShutdownError,  # another backend crashed and the server restarts
    asyncpg.TooManyConnectionsError,  # max_connections reached, for now
    asyncpg.TransactionRollbackError,  # deadlock detected, serialization failure: run it again
    asyncpg.LockNotAvailableError,  # lock_timeout: the tables busy for now (making a day of history)
    PoolBusy,  # every connection of a bounded pool in use for now (ingest's, under a flood of events)
)
# InterfaceErrors that say something about the statement or its values, not about the connection.
_PERMANENT: tuple[type[BaseException], ...] = (ValueError, UnsupportedClientFeatureError)


# The base classes of everything a database call can raise (for handlers that sort them with is_transient).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` means "the database is away or busy, try again" rather than "this cannot work"."""
    return isinstance(error, _TRANSIENT) and not isinstance(error, _PERMANENT)
