"""The operator's side of the routing table in Postgres: publish one Function's route, or remove it.

Every change is one transaction ending in ``NOTIFY stepline_routes``, on which every gateway replica reloads
its routing table. Publishing what is already there writes nothing and notifies nobody, so a resumed or
retried reconcile re-publishes nothing. A function id already published by another resource or by an SDK
app is refused rather than taken over. A database that is away (restarting, failing over, a terminated
connection, a deadlock: what ``stepline_store.errors.is_transient`` names) is ``RoutingUnavailable``, which
the handlers report and retry. The writes are the gateway's own (``stepline_store.functions``).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from stepline_store import queries, schema
from stepline_store.errors import SchemaMismatch, is_transient
from stepline_store.functions import PublishedFunction, publish_functions, remove_functions
from stepline_store.pool import connect, create_pool
from stepline_store.queries import FunctionsOfIdOrSourceRow

from stepline_operator.errors import FunctionIdTaken, RoutingUnavailable

# Names the operator's connections in pg_stat_activity.
_APPLICATION_NAME = "stepline-operator"


def source_of(namespace: str, name: str) -> str:
    """The ``source`` column of the routes a Function resource publishes."""
    return f"kubernetes:{namespace}/{name}"


# A Function resource's route: the row it publishes (a resource sends no checkpoint settings).
Route = PublishedFunction


def _unchanged(route: Route, row: FunctionsOfIdOrSourceRow) -> bool:
    """Whether the stored ``row`` already says what ``route`` would publish."""
    stored: dict[str, Any] = dict(row)
    return all(value == getattr(route, column) for column, value in stored.items())


async def check_schema(database_url: str) -> None:
    """Fail with a clear message when the database is unreachable or at another schema version (the
    gateway's check: ``stepline_store.schema.verify``)."""
    try:
        conn = await connect(database_url, application_name=_APPLICATION_NAME, within_s=15)
    except Exception as err:  # asyncpg's errors for a refused connection, credentials, a missing database
        raise RoutingUnavailable(f"cannot connect to the database: {err}") from None
    try:
        await schema.verify(conn)
    except SchemaMismatch as err:
        raise RoutingUnavailable(str(err)) from None
    finally:
        await conn.close()


class RouteTable:
    """Publishes and removes the routes of Function resources on a small connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, database_url: str, *, size: int) -> RouteTable:
        try:
            pool = await create_pool(
                database_url, min_size=1, max_size=size, application_name=_APPLICATION_NAME, within_s=15
            )
        except Exception as err:
            _reraise_unless_transient(err)
            raise RoutingUnavailable(f"cannot connect to the database: {err}") from None
        return cls(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        """The operator's connection pool, shared by what else it publishes (webhooks)."""
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    async def publish(self, route: Route) -> bool:
        """Make ``route`` the only route of its source; answer whether anything changed (and was notified)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await queries.lock_function_id(conn, function_id=route.id)
                rows = await queries.functions_of_id_or_source(
                    conn, function_id=route.id, source=route.source
                )
                current = next((row for row in rows if row["id"] == route.id), None)
                if current is not None and current["source"] != route.source:
                    raise FunctionIdTaken(
                        f"function id {route.id} is already published by {current['source']}: give this "
                        "Function another spec.functionId (or spec.app), or remove the other one"
                    )
                others = [row["id"] for row in rows if row["id"] != route.id]
                if current is not None and _unchanged(route, current) and not others:
                    return False
                await publish_functions(conn, [route], replace_source=route.source)
                return True
        except Exception as err:
            _reraise_unless_transient(err)
            raise RoutingUnavailable(f"cannot reach the database to publish {route.id}: {err}") from None

    async def unpublish(self, source: str) -> bool:
        """Remove every route of ``source``; answer whether there was one (then NOTIFY)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await remove_functions(conn, source=source) > 0
        except Exception as err:
            _reraise_unless_transient(err)
            raise RoutingUnavailable(
                f"cannot reach the database to remove the routes of {source}: {err}"
            ) from None


def _reraise_unless_transient(err: Exception) -> None:
    """Database and network errors (a restart, a failover, a terminated backend, a deadlock) become
    ``RoutingUnavailable``, reported as a condition and retried; anything else is raised as it is."""
    if not is_transient(err):
        raise err
