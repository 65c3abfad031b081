"""Ingest and execution hold separate shares of the gateway's connections: a flood of events cannot starve
the runs, and ingest that cannot get its share in time is refused (503) without storing anything.

The test holds both connections of ingest's pool busy with real POSTs: each sends an event whose id an open
transaction of the test has just ingested, so Postgres makes it wait on that row. Meanwhile a third POST is
answered 503 with Retry-After and stores nothing, and a run replayed through the API still completes. When
the test's transaction rolls back, the waiting POSTs are stored and their runs complete.
"""

from __future__ import annotations

import asyncio

import asyncpg
from stepline_gateway.events import parse_events
from stepline_gateway.ingest import COMBINED_EVENTS
from stepline_store.pool import connect

from tests.services import RawService, raw
from tests.support import RunningGateway, eventually, route, running_gateway
from tests.webhook_senders import publish, webhook

INGEST_CONNECTIONS = 2


async def ingest_connections_waiting(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stepline-gateway ingest'"
            " AND datname = current_database() AND wait_event_type = 'Lock'"
        )
        return value
    finally:
        await conn.close()


async def stored_events(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval("SELECT count(*) FROM events")
        return value
    finally:
        await conn.close()


async def completed(gw: RunningGateway, event_id: str) -> bool:
    runs = await gw.runs_of(event_id)
    return bool(runs) and all(run["status"] == "Completed" for run in runs)


async def test_execution_runs_while_ingest_holds_every_connection_of_its_share(database_url: str) -> None:
    service = RawService({"shop-work": lambda body: raw(200, b'{"ok": true}')})
    async with (
        service.serving() as url,
        running_gateway(
            database_url, pool_size=6, ingest_pool_size=INGEST_CONNECTIONS, ingest_wait_s=0.5
        ) as gw,
    ):
        await gw.publish(route("shop-work", url, {"event": "work/go"}))
        await publish(gw, (webhook("open", {"none": {}}), []))
        [first] = await gw.send({"id": "first", "name": "work/go", "data": {}})
        await eventually(lambda: completed(gw, first))
        [run] = await gw.runs_of(first)

        holder = await connect(database_url)
        transaction = holder.transaction()
        await transaction.start()
        try:
            held = parse_events(b'{"id": "held", "name": "work/go"}', max_event_bytes=1024)
            await gw.gateway.ingestor.ingest(held, on=holder)
            # POSTs of more events than ingest combines (ingest.py), so that each takes a connection.
            waiting = [
                asyncio.create_task(
                    gw.http.post(
                        "/e/test-key",
                        json=[
                            {"id": "held", "name": "work/go"},
                            *({"id": f"more-{n}-{m}", "name": "work/more"} for m in range(COMBINED_EVENTS)),
                        ],
                    )
                )
                for n in range(INGEST_CONNECTIONS)
            ]

            async def share_busy() -> bool:
                return await ingest_connections_waiting(database_url) == INGEST_CONNECTIONS

            await eventually(share_busy)

            refused = await gw.http.post("/e/test-key", json=[{"id": "late", "name": "work/go"}])
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert (await gw.http.get("/v1/events/late")).status_code == 404
            # A webhook delivery takes events in through the same share: refused too, nothing stored.
            before = await stored_events(database_url)
            hook = await gw.http.post("/webhooks/shop/open", json={"name": "work/go", "data": {}})
            assert hook.status_code == 503, hook.text
            assert hook.headers["retry-after"] == "30"
            assert "busy taking in events" in hook.json()["error"]
            assert await stored_events(database_url) == before

            # Execution and the API have connections of their own: a replayed run completes meanwhile.
            replayed = await gw.http.post(f"/v1/runs/{run['id']}/replay")
            assert replayed.status_code == 201, replayed.text
            replay_id = replayed.json()["id"]

            async def replay_done() -> bool:
                return (await gw.run(replay_id))["status"] == "Completed"

            await eventually(replay_done)
            assert not any(task.done() for task in waiting)
        finally:
            await transaction.rollback()
            await holder.close()

        answers = await asyncio.gather(*waiting)
        assert [answer.status_code for answer in answers] == [200] * INGEST_CONNECTIONS
        await eventually(lambda: completed(gw, "held"))
        assert len(await gw.runs_of("held")) == 1
