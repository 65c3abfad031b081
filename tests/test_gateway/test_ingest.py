"""POST /e/{key}: events are stored once, fan out to every matching function, and bad input stores nothing."""

from __future__ import annotations

import json

import asyncpg
import pytest
from stepline_gateway.routing import Function

from tests.support import route, running_gateway


def function(fid: str, *triggers: dict[str, str], paused: bool = False) -> Function:
    # Never called: these tests stop before any run executes (concurrency 0).
    return route(fid, "http://127.0.0.1:9/api/inngest", *triggers, paused=paused)


async def counts(database_url: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM events) e, (SELECT count(*) FROM runs) r,"
            " (SELECT count(*) FROM work) w"
        )
        assert row is not None
        return row["e"], row["r"], row["w"]
    finally:
        await conn.close()


async def test_fan_out_creates_one_run_per_matching_function(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        await gw.publish(
            function("shop-welcome", {"event": "user/signed-up"}),
            function("shop-crm", {"event": "user/signed-up"}),
            function("shop-all-users", {"event": "user/*"}),
            function("shop-big", {"event": "user/signed-up", "if": "event.data.plan == 'pro'"}),
            function("shop-paused", {"event": "user/signed-up"}, paused=True),
            function("shop-orders", {"event": "order/created"}),
        )
        [event_id] = await gw.send({"name": "user/signed-up", "data": {"plan": "free"}})
        runs = await gw.runs_of(event_id)
        assert sorted(r["function_id"] for r in runs) == ["shop-all-users", "shop-crm", "shop-welcome"]
        assert {r["status"] for r in runs} == {"Queued"}
        [pro_id] = await gw.send({"name": "user/signed-up", "data": {"plan": "pro"}})
        assert len(await gw.runs_of(pro_id)) == 4


async def test_duplicate_event_id_starts_nothing_new(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        await gw.publish(function("shop-welcome", {"event": "user/signed-up"}))
        event = {"name": "user/signed-up", "data": {}, "id": "signup-42"}
        assert await gw.send(event) == ["signup-42"]
        assert await gw.send(event, event) == ["signup-42", "signup-42"]
        assert await counts(database_url) == (1, 1, 1)


async def test_a_batch_is_stored_in_one_go(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        await gw.publish(function("shop-welcome", {"event": "user/signed-up"}))
        ids = await gw.send(*({"name": "user/signed-up", "data": {"n": n}} for n in range(20)))
        assert len(set(ids)) == 20
        assert await counts(database_url) == (20, 20, 20)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 400, "empty array"),
        (json.dumps({"data": {}}).encode(), 400, "has no name"),
        (json.dumps({"name": "a", "data": [1]}).encode(), 400, "'data' must be a JSON object"),
        (json.dumps({"name": "a", "data": "x"}).encode(), 400, "'data' must be a JSON object"),
        (json.dumps({"name": "a", "colour": 1}).encode(), 400, "unknown fields ['colour']"),
        (json.dumps([{"name": "ok"}, 7]).encode(), 400, "event 1 is not a JSON object"),
        (json.dumps({"name": "a", "ts": "yesterday"}).encode(), 400, "'ts' must be"),
        (json.dumps({"name": "big", "data": {"blob": "x" * 600_000}}).encode(), 413, "over the limit"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    database_url: str, body: bytes, status: int, message: str
) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        await gw.publish(function("shop-welcome", {"event": "a"}), function("shop-ok", {"event": "ok"}))
        response = await gw.http.post("/e/key", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status
        assert message in response.json()["error"]
        assert await counts(database_url) == (0, 0, 0)


async def test_a_body_over_the_request_limit_is_refused(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0, max_body_bytes=1000) as gw:
        events = [{"name": "a", "data": {"n": "x" * 100}} for _ in range(20)]
        response = await gw.http.post("/e/key", json=events)
        assert response.status_code == 413
        assert "over the limit of 1000 bytes" in response.json()["error"]
        assert await counts(database_url) == (0, 0, 0)


async def test_unknown_run_and_event_answer_404(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        for path in (
            "/v1/runs/not-a-uuid",
            "/v1/runs/00000000-0000-0000-0000-000000000000",
            "/v1/events/nope",
        ):
            response = await gw.http.get(path)
            assert response.status_code == 404, path
            assert "no " in response.json()["error"]
