"""Group commit of ingest (ingest.py): the small POSTs that arrive while an ingest is in flight share one
statement and one commit, each answered with its own ids and runs, as if they had been sent one by one.

Two POSTs are held on a lock of the events table (one in each of the two batches the gateway writes at
once), so that the others queue behind them for certain; when the lock goes, they are ingested together.
Real gateway, real Postgres, real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from stepline_gateway.ingest import COMBINED_EVENTS
from stepline_operator import event_keys
from stepline_operator.event_keys import hashes_of
from stepline_operator.routes import RouteTable

from tests.support import RunningGateway, eventually, route, running_gateway
from tests.test_security.test_holes import EVENT_KEY, KEY
from tests.test_security.test_namespaces import encode, published

PARKED = "http://127.0.0.1:9/api/inngest"
POSTS = 20


async def _ingest_waits(admin: asyncpg.Connection, batches: int = 1) -> bool:
    waiting = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%event_ids%'"
    )
    return bool(waiting >= batches)


async def hold_both_batches(
    gw: RunningGateway, admin: asyncpg.Connection, key: str
) -> list[asyncio.Task[Any]]:
    """While the events are locked: a POST in each of the two batches written at once, waiting on the lock."""
    held: list[asyncio.Task[Any]] = []
    for n in (1, 2):
        body = [{"name": "shop/held", "data": {}, "id": f"held-{n}"}]
        held.append(asyncio.create_task(gw.http.post(f"/e/{key}", json=body)))
        await eventually(lambda n=n: _ingest_waits(admin, n), timeout=10)
    return held


@contextlib.asynccontextmanager
async def events_locked(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The events table locked until the block ends; yields a connection that sees the waiting ingests."""
    admin = await asyncpg.connect(database_url)
    holder = await asyncpg.connect(database_url)
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        try:
            yield admin
        finally:
            await lock.rollback()
    finally:
        await holder.close()
        await admin.close()


async def held_then_together(
    gw: RunningGateway, database_url: str, posts: list[tuple[str, list[dict[str, Any]]]]
) -> list[httpx.Response]:
    """While the events are locked, hold both batches, then send ``posts``; unlock: their answers."""
    async with events_locked(database_url) as admin:
        held = await hold_both_batches(gw, admin, posts[0][0])
        rest = [asyncio.create_task(gw.http.post(f"/e/{key}", json=body)) for key, body in posts]
        await asyncio.sleep(0.3)  # every POST has reached the combiner
    assert [(await task).status_code for task in held] == [200, 200]
    return [await task for task in rest]


async def test_posts_that_arrive_together_share_a_statement_and_each_gets_its_own_answer(
    database_url: str,
) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        await gw.publish(route("shop-pay", PARKED, {"event": "shop/pay"}))
        batches = gw.gateway.ingestor.batches
        before = batches.batches
        posts = [("k", [{"name": "shop/pay", "data": {"n": n}, "id": f"pay-{n}"}]) for n in range(POSTS)]
        answers = await held_then_together(gw, database_url, posts)

        assert [answer.status_code for answer in answers] == [200] * POSTS
        assert [answer.json()["ids"] for answer in answers] == [[f"pay-{n}"] for n in range(POSTS)]
        assert [answer.json()["runs_started"] for answer in answers] == [1] * POSTS
        # The two held POSTs alone, the twenty that queued behind them in one statement.
        assert batches.batches - before == 3
        for n in range(POSTS):
            assert [run["function_id"] for run in await gw.runs_of(f"pay-{n}")] == ["shop-pay"]

        # A POST of more events than COMBINED_EVENTS is a batch already: it keeps its own transaction.
        statements = batches.batches
        many = await gw.send(*({"name": "shop/pay", "data": {"n": n}} for n in range(COMBINED_EVENTS + 1)))
        assert len(many) == COMBINED_EVENTS + 1
        assert batches.batches == statements


async def test_one_event_in_two_posts_of_a_batch_is_new_once_and_starts_one_run(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        await gw.publish(route("shop-pay", PARKED, {"event": "shop/pay"}))
        batches = gw.gateway.ingestor.batches
        before = batches.batches
        twice = [{"name": "shop/pay", "data": {"copy": True}, "id": "same"}]
        posts = [
            ("k", [{"name": "shop/pay", "data": {}, "id": "first"}]),
            ("k", twice),
            ("k", [{"name": "shop/other", "data": {}, "id": "unrouted"}]),
            ("k", twice),
        ]
        answers = await held_then_together(gw, database_url, posts)

        assert [answer.json()["ids"] for answer in answers] == [["first"], ["same"], ["unrouted"], ["same"]]
        started = [answer.json()["runs_started"] for answer in answers]
        assert started[0] == 1
        assert started[2] == 0
        # As if sent one after the other: whichever came first started the run, the other was a duplicate.
        assert sorted([started[1], started[3]]) == [0, 1]
        assert len(await gw.runs_of("same")) == 1
        assert batches.batches - before == 3


async def test_posts_of_two_namespaces_in_one_batch_reach_only_their_own(database_url: str) -> None:
    async with running_gateway(
        database_url, dev=False, signing_key=KEY, event_keys=[EVENT_KEY], concurrency=0
    ) as gw:
        for namespace in ("team-a", "team-b"):
            function = published(namespace, "pay", PARKED, {"event": "shop/pay"})
            await gw.gateway.registry.publish([function], replace_source=f"kubernetes:{namespace}/pay")
        await gw.gateway.reload_routes()
        routes = await RouteTable.open(database_url, size=1)
        try:
            await event_keys.publish(routes.pool, "team-a", "keys", hashes_of({"k": encode(b"key-of-a")}))
            await event_keys.publish(routes.pool, "team-b", "keys", hashes_of({"k": encode(b"key-of-b")}))

            async def accepted() -> bool:
                answer = await gw.http.post("/e/key-of-b", json={"name": "shop/nothing", "data": {}})
                return answer.status_code == 200

            await eventually(accepted)
            posts = [
                ("key-of-a", [{"name": "shop/pay", "data": {}, "id": "held"}]),
                ("key-of-a", [{"name": "shop/pay", "data": {}, "id": "to-a"}]),
                ("key-of-b", [{"name": "shop/pay", "data": {}, "id": "to-b"}]),
                (EVENT_KEY, [{"name": "shop/pay", "data": {}, "id": "to-all"}]),
            ]
            batches = gw.gateway.ingestor.batches
            before = batches.batches
            answers = await held_then_together(gw, database_url, posts)
            assert [answer.json()["runs_started"] for answer in answers] == [1, 1, 1, 2]
            assert batches.batches - before == 3
            for event_id, expected in (
                ("to-a", ["team-a/shop-pay"]),
                ("to-b", ["team-b/shop-pay"]),
                ("to-all", ["team-a/shop-pay", "team-b/shop-pay"]),
            ):
                started = sorted(run["function_id"] for run in await gw.runs_of(event_id))
                assert started == expected, event_id
            # The event log keeps each event in the namespaces it was sent into (what their viewers see).
            conn = await asyncpg.connect(database_url)
            try:
                rows = await conn.fetch("SELECT id, namespaces FROM events WHERE id LIKE 'to-%'")
            finally:
                await conn.close()
            assert {row["id"]: row["namespaces"] for row in rows} == {
                "to-a": ["team-a"],
                "to-b": ["team-b"],
                "to-all": None,
            }
        finally:
            await routes.close()


async def test_a_post_queued_behind_the_batches_held_up_is_refused_in_time_and_stores_nothing(
    database_url: str,
) -> None:
    async with running_gateway(database_url, concurrency=0, ingest_wait_s=0.5) as gw:
        await gw.publish(route("shop-pay", PARKED, {"event": "shop/pay"}))
        async with events_locked(database_url) as admin:
            held = await hold_both_batches(gw, admin, "k")
            queued = await gw.http.post("/e/k", json=[{"name": "shop/pay", "id": "queued"}])
            # It waited --ingest-wait-s for a batch to take it, as for a connection: 503, send it again.
            assert queued.status_code == 503, queued.text
            assert queued.headers["retry-after"] == "1"
            assert "busy taking in events" in queued.json()["error"]
        assert [(await task).status_code for task in held] == [200, 200]
        assert (await gw.http.get("/v1/events/queued")).status_code == 404
        assert (await gw.http.get("/v1/events/held-2")).status_code == 200
