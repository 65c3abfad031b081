"""The operator's side of the routing table in Postgres: publish one Function's route, or remove it.

Every change is one transaction ending in ``NOTIFY stepline_routes``, on which every gateway replica reloads
its routing table. Publishing what is already there writes nothing and notifies nobody, so a resumed or
retried reconcile re-publishes nothing. A function id already published by another resource or by an SDK
app is refused rather than taken over. A database that is away (restarting, failing over, a terminated
connection, a deadlock: what ``stepline_store.errors.is_transient`` names) is ``RoutingUnavailable``, which
the handlers report and retry. The SQL is the shared named queries of ``stepline_store.sql``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
from stepline_store.errors import is_transient
from stepline_store.sql import load_queries, migrations

from stepline_operator.errors import FunctionIdTaken, RoutingUnavailable

QUERIES = load_queries()

# Names the operator's connections in pg_stat_activity.
_APPLICATION_NAME = "stepline-operator"


def source_of(namespace: str, name: str) -> str:
    """The ``source`` column of the routes a Function resource publishes."""
    return f"kubernetes:{namespace}/{name}"


@dataclass(frozen=True)
class Route:
    """One row of the ``functions`` table, as the gateway reads it."""

    id: str
    app_id: str
    name: str
    url: str
    triggers: list[dict[str, Any]]
    retries: int
    paused: bool
    source: str
    cancel_on: list[dict[str, Any]]
    # The flow-control settings and the retry policy as the CRD spells them; None when not declared.
    flow: dict[str, Any] | None = None
    retry_policy: dict[str, Any] | None = None

    def same_as(self, row: asyncpg.Record) -> bool:
        return all(row[column] == getattr(self, column) for column in self.__dataclass_fields__)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def check_schema(database_url: str) -> None:
    """Fail with a clear message when the database is unreachable or at another schema version."""
    try:
        conn = await asyncpg.connect(database_url, timeout=15)
    except Exception as err:  # asyncpg's errors for a refused connection, credentials, a missing database
        raise RoutingUnavailable(f"cannot connect to the database: {err}") from None
    try:
        have = await conn.fetchval(QUERIES["schema_version"])
    finally:
        await conn.close()
    need = migrations()[-1].version
    if have != need:
        raise RoutingUnavailable(
            f"the database schema is at version {have}, this Stepline needs {need}: "
            + ("run `stepline migrate`" if have < need else "upgrade Stepline")
        )


class RouteTable:
    """Publishes and removes the routes of Function resources on a small connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, database_url: str, *, size: int) -> RouteTable:
        try:
            pool = await asyncpg.create_pool(
                database_url,
                min_size=1,
                max_size=size,
                init=_init_connection,
                timeout=15,
                server_settings={"application_name": _APPLICATION_NAME},
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
                await conn.execute(QUERIES["lock_function_id"], route.id)
                rows = await conn.fetch(QUERIES["functions_of_id_or_source"], route.id, route.source)
                current = next((row for row in rows if row["id"] == route.id), None)
                if current is not None and current["source"] != route.source:
                    raise FunctionIdTaken(
                        f"function id {route.id} is already published by {current['source']}: give this "
                        "Function another spec.functionId (or spec.app), or remove the other one"
                    )
                others = [row["id"] for row in rows if row["id"] != route.id]
                if current is not None and route.same_as(current) and not others:
                    return False
                await conn.execute(
                    QUERIES["upsert_functions"],
                    [route.id],
                    [route.app_id],
                    [route.name],
                    [route.url],
                    [json.dumps(route.triggers)],
                    [route.retries],
                    [route.paused],
                    [route.source],
                )
                await conn.execute(QUERIES["set_cancel_rules"], [route.id], [json.dumps(route.cancel_on)])
                await conn.execute(
                    QUERIES["set_flow_control"],
                    [route.id],
                    [None if route.flow is None else json.dumps(route.flow)],
                    [None if route.retry_policy is None else json.dumps(route.retry_policy)],
                )
                await conn.execute(QUERIES["delete_functions_of_source_except"], route.source, [route.id])
                await conn.execute(QUERIES["notify_routes"])
                return True
        except Exception as err:
            _reraise_unless_transient(err)
            raise RoutingUnavailable(f"cannot reach the database to publish {route.id}: {err}") from None

    async def unpublish(self, source: str) -> bool:
        """Remove every route of ``source``; answer whether there was one (then NOTIFY)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                status = await conn.execute(QUERIES["delete_functions_of_source_except"], source, [])
                if status == "DELETE 0":
                    return False
                await conn.execute(QUERIES["notify_routes"])
                return True
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
