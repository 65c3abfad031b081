"""The Postgres store: a connection pool and the named queries of ``stepline_store/sql/queries.sql``.

No other module holds SQL. Callers get asyncpg records back and give plain Python values; JSON columns
are encoded and decoded here. ``schema`` applies migrations; serving processes only verify the version.
A ``Store`` counts the statements that failed, transient or not (``errors.is_transient``), and says how
many of its pool's connections are in use: the gateway's metrics read both.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from stepline_store.errors import PoolBusy, is_transient
from stepline_store.sql import load_queries

Record = asyncpg.Record
Connection = asyncpg.Connection
# A ``Connection`` or the ``Pool``: both run queries.
Queryable = Any

QUERIES = load_queries()

# The settings of the sessions of Stepline's pools (the gateway's and the operator's). Each statement of
# queries.sql reads by key or by an indexed range, and asyncpg keeps it prepared, so after five runs
# Postgres plans it once for any values and keeps that plan for the connection's life. A plan made while
# a table holds a few rows (the work queue after a quiet spell, a new day's partition of runs, steps and
# events) reads that table whole, which is right at that moment, and goes on reading it whole as it
# fills: in a burst of 2,000 runs the claim took 60 to 90 ms instead of 6 (docs/performance.md). With
# sequential scans disabled, Postgres still reads a table whole where no index serves a statement, and
# otherwise takes the index whatever the table's size when it plans. One-off sessions (``connect``: the
# listener, migrations, schema checks) keep Postgres's defaults.
SESSION_SETTINGS = {"enable_seqscan": "off"}


async def _init_connection(conn: Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def _keep_session(conn: Connection) -> None:
    """Pooled connections hold no session state (LISTEN and session locks use connections of their own),
    so the reset query asyncpg runs on every release is a round trip for nothing; open transactions are
    still rolled back by the pool itself."""


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    application_name: str = "stepline",
    within_s: float = 60,
) -> asyncpg.Pool:
    """A pool; ``application_name`` names its connections in ``pg_stat_activity`` (who holds what), and
    opening each connection may take ``within_s`` seconds."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=60,
        timeout=within_s,
        server_settings={"application_name": application_name, **SESSION_SETTINGS},
    )
    return pool


async def connect(dsn: str, *, application_name: str = "stepline", within_s: float = 60) -> Connection:
    conn: Connection = await asyncpg.connect(
        dsn, timeout=within_s, server_settings={"application_name": application_name}
    )
    await _init_connection(conn)
    return conn


@dataclass(frozen=True)
class PoolUsage:
    """The connections of a pool now: in use, idle (open, not lent out), and the most it opens."""

    in_use: int
    idle: int
    max_size: int


class Store:
    """Runs named queries on a pool; ``transaction()`` yields a connection for several in one go."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Statements that raised, by kind: "transient" (the database away or busy) or "permanent".
        self.errors = {"transient": 0, "permanent": 0}

    def _failed(self, error: Exception) -> None:
        self.errors["transient" if is_transient(error) else "permanent"] += 1

    def usage(self) -> PoolUsage:
        size, idle = self.pool.get_size(), self.pool.get_idle_size()
        return PoolUsage(in_use=max(0, size - idle), idle=idle, max_size=self.pool.get_max_size())

    async def fetch(self, name: str, *args: Any, on: Queryable = None) -> list[Record]:
        try:
            result: list[Record] = await (on or self.pool).fetch(QUERIES[name], *args)
        except Exception as err:
            self._failed(err)
            raise
        return result

    async def fetchrow(self, name: str, *args: Any, on: Queryable = None) -> Record | None:
        try:
            result: Record | None = await (on or self.pool).fetchrow(QUERIES[name], *args)
        except Exception as err:
            self._failed(err)
            raise
        return result

    async def fetchval(self, name: str, *args: Any, on: Queryable = None) -> Any:
        try:
            return await (on or self.pool).fetchval(QUERIES[name], *args)
        except Exception as err:
            self._failed(err)
            raise

    async def execute(self, name: str, *args: Any, on: Queryable = None) -> str:
        try:
            result: str = await (on or self.pool).execute(QUERIES[name], *args)
        except Exception as err:
            self._failed(err)
            raise
        return result

    async def ping(self, *, within_s: float) -> None:
        """Answer when the database does, within ``within_s`` seconds (else TimeoutError or its own error)."""
        try:
            await self.pool.fetchval(QUERIES["ping"], timeout=within_s)
        except Exception as err:
            self._failed(err)
            raise

    @asynccontextmanager
    async def transaction(
        self, on: Queryable = None, *, within_s: float | None = None
    ) -> AsyncIterator[Queryable]:
        """A transaction on a pooled connection; inside another one (``on``), a savepoint of it. With
        ``within_s``, ``PoolBusy`` when no connection comes free in that many seconds (nothing ran)."""
        if on is not None and on is not self.pool:
            async with on.transaction():
                yield on
            return
        if within_s is None:
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn
            return
        try:
            conn = await self.pool.acquire(timeout=within_s)
        except TimeoutError:
            raise PoolBusy(f"no connection came free within {within_s:g} s") from None
        try:
            async with conn.transaction():
                yield conn
        finally:
            await self.pool.release(conn)

    async def close(self) -> None:
        await self.pool.close()


# Where a query of ``stepline_store.queries`` runs: a ``Store`` (its failures counted) or a bare connection
# or pool (the operator's, the migrations').
Db = Store | Connection | asyncpg.Pool | PoolConnectionProxy


async def fetch(db: Db, name: str, args: tuple[Any, ...], on: Queryable) -> list[Record]:
    if isinstance(db, Store):
        return await db.fetch(name, *args, on=on)
    rows: list[Record] = await (on or db).fetch(QUERIES[name], *args)
    return rows


async def fetchrow(db: Db, name: str, args: tuple[Any, ...], on: Queryable) -> Record | None:
    if isinstance(db, Store):
        return await db.fetchrow(name, *args, on=on)
    row: Record | None = await (on or db).fetchrow(QUERIES[name], *args)
    return row


async def fetchval(db: Db, name: str, args: tuple[Any, ...], on: Queryable) -> Any:
    if isinstance(db, Store):
        return await db.fetchval(name, *args, on=on)
    return await (on or db).fetchval(QUERIES[name], *args)


async def execute(db: Db, name: str, args: tuple[Any, ...], on: Queryable) -> str:
    if isinstance(db, Store):
        return await db.execute(name, *args, on=on)
    status: str = await (on or db).execute(QUERIES[name], *args)
    return status
