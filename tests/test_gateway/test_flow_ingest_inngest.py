"""Flow control at ingest for an app written with the official Inngest Python SDK: its sync carries
rateLimit, idempotency, singleton, debounce and batchEvents, and the gateway enforces them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from typing import Any

import fastapi
import inngest
import inngest.fast_api
from stepline_gateway.clock import ManualClock

from tests.support import RunningGateway, eventually, running_gateway, serve

SIGNING_KEY = "signkey-prod-" + "cd" * 32
EVENT_KEY = "flow-event-key"


def build_app(gateway_url: str, seen: dict[str, list[Any]], release: asyncio.Event) -> fastapi.FastAPI:
    client = inngest.Inngest(
        app_id="pyflow",
        is_production=True,
        signing_key=SIGNING_KEY,
        event_key=EVENT_KEY,
        api_base_url=gateway_url,
        event_api_base_url=gateway_url,
    )

    def note(name: str, ctx: inngest.Context) -> None:
        seen.setdefault(name, []).append([e.data for e in ctx.events])

    @client.create_function(
        fn_id="limited",
        trigger=inngest.TriggerEvent(event="pyflow/limited"),
        rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(minutes=1), key="event.data.user"),
    )
    async def limited(ctx: inngest.Context) -> None:
        note("limited", ctx)

    @client.create_function(
        fn_id="once", trigger=inngest.TriggerEvent(event="pyflow/once"), idempotency="event.data.order"
    )
    async def once(ctx: inngest.Context) -> None:
        note("once", ctx)

    @client.create_function(
        fn_id="single",
        trigger=inngest.TriggerEvent(event="pyflow/single"),
        singleton=inngest.Singleton(key="event.data.user", mode="skip"),
    )
    async def single(ctx: inngest.Context) -> None:
        note("single", ctx)
        await release.wait()

    @client.create_function(
        fn_id="debounced",
        trigger=inngest.TriggerEvent(event="pyflow/debounced"),
        debounce=inngest.Debounce(period=datetime.timedelta(seconds=5), key="event.data.user"),
    )
    async def debounced(ctx: inngest.Context) -> None:
        note("debounced", ctx)

    @client.create_function(
        fn_id="batched",
        trigger=inngest.TriggerEvent(event="pyflow/batched"),
        batch_events=inngest.Batch(max_size=4, timeout=datetime.timedelta(seconds=5)),
    )
    async def batched(ctx: inngest.Context) -> None:
        note("batched", ctx)

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [limited, once, single, debounced, batched])
    return app


@contextlib.asynccontextmanager
async def setup(
    database_url: str, clock: ManualClock
) -> AsyncIterator[tuple[RunningGateway, dict[str, list[Any]], asyncio.Event]]:
    seen: dict[str, list[Any]] = {}
    release = asyncio.Event()
    async with (
        running_gateway(
            database_url, dev=False, signing_key=SIGNING_KEY, event_keys=[EVENT_KEY], clock=clock
        ) as gw,
        serve(build_app(gw.url, seen, release)) as app_url,
    ):
        await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
        yield gw, seen, release


async def _reasons(gw: RunningGateway, event_ids: list[str]) -> list[list[str]]:
    reasons = []
    for event_id in event_ids:
        event = (await gw.http.get(f"/v1/events/{event_id}")).json()
        reasons.append([s["reason"] for s in event["skipped"]])
    return reasons


async def test_the_sync_keeps_the_settings(database_url: str) -> None:
    async with setup(database_url, ManualClock()) as (gw, _, _):
        functions = {f["id"]: f for f in (await gw.http.get("/v1/functions")).json()["data"]}
        assert functions["pyflow-limited"]["flow"]["rateLimit"] == {
            "limit": 1,
            "period": "1m",
            "key": "event.data.user",
        }
        assert functions["pyflow-once"]["flow"]["idempotency"] == "event.data.order"
        assert functions["pyflow-batched"]["flow"]["batchEvents"]["maxSize"] == 4


async def test_rate_limit_idempotency_and_singleton(database_url: str) -> None:
    clock = ManualClock()
    async with setup(database_url, clock) as (gw, seen, release):
        limited = await gw.send(
            *({"name": "pyflow/limited", "data": {"user": u}} for u in "aab"), key=EVENT_KEY
        )
        once = await gw.send(*({"name": "pyflow/once", "data": {"order": o}} for o in "xxy"), key=EVENT_KEY)
        [first] = await gw.send({"name": "pyflow/single", "data": {"user": "a"}}, key=EVENT_KEY)
        await eventually(lambda: _len(seen, "single", 1))
        [second] = await gw.send({"name": "pyflow/single", "data": {"user": "a"}}, key=EVENT_KEY)
        await eventually(lambda: _len(seen, "limited", 2))
        await eventually(lambda: _len(seen, "once", 2))
        assert await _reasons(gw, limited) == [[], ["rate_limited"], []]
        assert await _reasons(gw, once) == [[], ["idempotency"], []]
        assert await _reasons(gw, [first, second]) == [[], ["singleton"]]
        release.set()
        await asyncio.sleep(0.3)
        assert sorted(e[0]["user"] for e in seen["limited"]) == ["a", "b"]
        assert len(seen["single"]) == 1


async def test_debounce_and_batch(database_url: str) -> None:
    clock = ManualClock()
    async with setup(database_url, clock) as (gw, seen, _):
        for n in range(3):
            await gw.send({"name": "pyflow/debounced", "data": {"user": "a", "n": n}}, key=EVENT_KEY)
        await gw.send(*({"name": "pyflow/batched", "data": {"n": n}} for n in range(6)), key=EVENT_KEY)
        await eventually(lambda: _len(seen, "batched", 1))
        assert [e["n"] for e in seen["batched"][0]] == [0, 1, 2, 3]
        clock.advance(6)
        await eventually(lambda: _len(seen, "batched", 2))
        await eventually(lambda: _len(seen, "debounced", 1))
        assert [e["n"] for e in seen["batched"][1]] == [4, 5]
        assert seen["debounced"] == [[{"user": "a", "n": 2}]]


async def _len(seen: dict[str, list[Any]], name: str, n: int) -> bool:
    return len(seen.get(name, [])) >= n
