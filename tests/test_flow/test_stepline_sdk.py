"""Flow control at claim time declared with Stepline's own SDK (``client.function(...)``): a concurrency
limit per key, a throttle on the test clock and a priority behind a limit of one, as the app sees them."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

import stepline
import stepline.asgi
from stepline_gateway.clock import ManualClock

from tests.support import RunningGateway, eventually, running_gateway, serve
from tests.test_flow.support import all_ended, holds


class Seen:
    def __init__(self) -> None:
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()
        self.started: dict[str, list[int]] = collections.defaultdict(list)

    async def hold(self, fn: str, key: str, n: int, hold_s: float) -> int:
        self.started[fn].append(n)
        self.in_flight[key] += 1
        self.most[key] = max(self.most[key], self.in_flight[key])
        await asyncio.sleep(hold_s)
        self.in_flight[key] -= 1
        return n


@contextlib.asynccontextmanager
async def app(database_url: str, clock: ManualClock) -> AsyncIterator[tuple[RunningGateway, Seen]]:
    seen = Seen()
    async with running_gateway(database_url, clock=clock) as gw:
        client = stepline.Client("ours", gateway_url=gw.url, dev=True)

        @client.function(
            id="limited",
            trigger="ours/limited",
            concurrency=stepline.Concurrency(limit=2, key="event.data.acct"),
        )
        async def limited(ctx: stepline.Context) -> int:
            data = ctx.event.data
            return await ctx.step.run("work", seen.hold, "limited", str(data["acct"]), int(data["n"]), 0.3)

        @client.function(id="paced", trigger="ours/paced", throttle=stepline.Throttle(limit=1, period="1m"))
        async def paced(ctx: stepline.Context) -> int:
            return await ctx.step.run("work", seen.hold, "paced", "paced", int(ctx.event.data["n"]), 0)

        @client.function(
            id="ranked",
            trigger="ours/ranked",
            concurrency=1,
            priority=stepline.Priority(run="event.data.p"),
        )
        async def ranked(ctx: stepline.Context) -> int:
            return await ctx.step.run("work", seen.hold, "ranked", "ranked", int(ctx.event.data["n"]), 0.2)

        async with serve(stepline.asgi.serve_app(client, [limited, paced, ranked])) as app_url:
            await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
            yield gw, seen
        await client.aclose()


async def test_our_sdk_declares_what_the_claim_enforces(database_url: str) -> None:
    clock = ManualClock()
    async with app(database_url, clock) as (gw, seen):
        await gw.send(*({"name": "ours/limited", "data": {"n": n, "acct": f"a{n % 2}"}} for n in range(8)))
        await gw.send(*({"name": "ours/paced", "data": {"n": n}} for n in range(3)))
        await gw.send({"name": "ours/ranked", "data": {"n": 0, "p": 0}})
        await eventually(holds(lambda: bool(seen.started["ranked"])))
        await gw.send(*({"name": "ours/ranked", "data": {"n": n, "p": 0}} for n in (1, 2)))
        await gw.send({"name": "ours/ranked", "data": {"n": 3, "p": 60}})

        runs = await all_ended(gw, "ours-limited", 8)
        assert {run["status"] for run in runs} == {"Completed"}
        assert seen.most["a0"] == seen.most["a1"] == 2
        await all_ended(gw, "ours-ranked", 4)
        assert seen.started["ranked"] == [0, 3, 1, 2]

        # The throttle let one start through; the next two each wait a minute.
        assert seen.started["paced"] == [0]
        for expected in ([0, 1], [0, 1, 2]):
            clock.advance(60)
            await eventually(holds(lambda: len(seen.started["paced"]) == len(expected)))  # noqa: B023
            assert seen.started["paced"] == expected
