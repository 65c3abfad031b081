"""The operator's publishes through database faults: a connection terminated in the middle of a publish and
a Postgres that is away are ``RoutingUnavailable`` (a condition, retried), never a stray asyncpg error, and
the next publish after the database is back goes through."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from stepline_operator.errors import RoutingUnavailable
from stepline_operator.routes import Route, RouteTable

from tests.support import eventually
from tests.test_faults.postgres import RestartablePostgres


def route(name: str) -> Route:
    return Route(
        id=f"shop-{name}",
        app_id="shop",
        name=name,
        url="http://shop-api.shop.svc.cluster.local:8000/api/inngest",
        triggers=[{"event": "shop/order"}],
        retries=4,
        paused=False,
        source=f"kubernetes:shop/{name}",
        cancel_on=[],
    )


async def test_publishes_through_terminated_connections_and_a_restart(postgres: RestartablePostgres) -> None:
    database_url = await postgres.new_database()
    routes = await RouteTable.open(database_url, size=2)
    admin = await asyncpg.connect(database_url)
    blocker = await asyncpg.connect(database_url)
    try:
        assert await routes.publish(route("first"))

        # A publish waits on a locked table; its backend is terminated meanwhile.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE functions IN ACCESS EXCLUSIVE MODE")
        publishing = _publish_later(routes, route("second"))
        waiting = await eventually(lambda: _waiting_operator(admin), timeout=15)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", waiting)
        with pytest.raises(RoutingUnavailable, match="cannot reach the database to publish shop-second"):
            await publishing
        await transaction.rollback()
        await blocker.close()
        await admin.close()

        postgres.stop()
        with pytest.raises(RoutingUnavailable):
            await routes.publish(route("second"))
        postgres.start()
        assert await eventually(lambda: _published(routes, route("second")), timeout=15)
    finally:
        for conn in (admin, blocker):
            if not conn.is_closed():
                await conn.close()
        await routes.close()


def _publish_later(routes: RouteTable, what: Route) -> asyncio.Task[bool]:
    return asyncio.ensure_future(routes.publish(what))


async def _waiting_operator(admin: asyncpg.Connection) -> int | None:
    pid: int | None = await admin.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM functions%'"
    )
    return pid


async def _published(routes: RouteTable, what: Route) -> bool:
    """Whether ``what`` is published now (a first publish changes the table and answers True)."""
    try:
        return await routes.publish(what)
    except RoutingUnavailable:
        return False
