"""Flow control at claim time as the official Inngest SDKs declare it: the Python SDK (on FastAPI) and the
TypeScript SDK (v4 on Express, checkpointing on: its default). Concurrency per key: the most steps running
at once per key, seen by the app, is the limit, and every run completes; throttle: one start per period on
the test clock; priority: a run of higher priority starts before those queued earlier; a finish timeout
cancels a run that sleeps past it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import fastapi
import httpx
import inngest
import inngest.fast_api
import pytest
from stepline_gateway.clock import ManualClock

from tests.processes import typescript_app
from tests.support import RunningGateway, eventually, running_gateway, serve
from tests.test_flow.support import all_ended

SIGNING_KEY = "signkey-prod-" + "c1" * 32
EVENT_KEY = "flow-event-key"
TS_APP = Path(__file__).parents[1] / "test_checkpoint" / "ts_app"

Observed = Callable[[], Awaitable[dict[str, Any]]]


class Watch:
    """What the Python app saw: most steps at once per key, and the order of starts per function."""

    def __init__(self) -> None:
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()
        self.started: dict[str, list[int]] = collections.defaultdict(list)

    async def observed(self, fn: str, key: str, n: int, hold_s: float) -> int:
        self.started[fn].append(n)
        self.in_flight[key] += 1
        self.most[key] = max(self.most[key], self.in_flight[key])
        await asyncio.sleep(hold_s)
        self.in_flight[key] -= 1
        return n

    async def answer(self) -> dict[str, Any]:
        return {"most": dict(self.most), "started": dict(self.started)}


def python_app(gateway_url: str, watch: Watch) -> fastapi.FastAPI:
    client = inngest.Inngest(
        app_id="pyflow",
        is_production=True,
        signing_key=SIGNING_KEY,
        event_key=EVENT_KEY,
        api_base_url=gateway_url,
        event_api_base_url=gateway_url,
    )

    @client.create_function(
        fn_id="limited",
        trigger=inngest.TriggerEvent(event="pyflow/limited"),
        concurrency=[inngest.Concurrency(limit=2, key="event.data.acct")],
    )
    async def limited(ctx: inngest.Context) -> int:
        data = ctx.event.data
        n = await ctx.step.run(
            "work", lambda: watch.observed("limited", str(data["acct"]), int(str(data["n"])), 0.3)
        )
        return int(str(n)) + 1

    @client.create_function(
        fn_id="paced",
        trigger=inngest.TriggerEvent(event="pyflow/paced"),
        throttle=inngest.Throttle(limit=1, period=datetime.timedelta(minutes=1)),
    )
    async def paced(ctx: inngest.Context) -> int:
        n = int(str(ctx.event.data["n"]))
        return int(str(await ctx.step.run("work", lambda: watch.observed("paced", "paced", n, 0))))

    @client.create_function(
        fn_id="ranked",
        trigger=inngest.TriggerEvent(event="pyflow/ranked"),
        concurrency=[inngest.Concurrency(limit=1)],
        priority=inngest.Priority(run="event.data.p"),
    )
    async def ranked(ctx: inngest.Context) -> int:
        n = int(str(ctx.event.data["n"]))
        return int(str(await ctx.step.run("work", lambda: watch.observed("ranked", "ranked", n, 0.2))))

    @client.create_function(
        fn_id="timed",
        trigger=inngest.TriggerEvent(event="pyflow/timed"),
        timeouts=inngest.Timeouts(finish=datetime.timedelta(minutes=1)),
    )
    async def timed(ctx: inngest.Context) -> str:
        n = int(str(ctx.event.data["n"]))
        await ctx.step.run("work", lambda: watch.observed("timed", "timed", n, 0))
        await ctx.step.sleep("nap", datetime.timedelta(seconds=int(str(ctx.event.data["nap_s"]))))
        return "done"

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [limited, paced, ranked, timed])
    return app


@contextlib.asynccontextmanager
async def python_sdk(
    database_url: str, clock: ManualClock
) -> AsyncIterator[tuple[RunningGateway, str, Observed]]:
    async with running_gateway(
        database_url, clock=clock, dev=False, signing_key=SIGNING_KEY, event_keys=[EVENT_KEY]
    ) as gw:
        watch = Watch()
        async with serve(python_app(gw.url, watch)) as app_url:
            await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
            yield gw, "pyflow", watch.answer


@contextlib.asynccontextmanager
async def typescript_sdk(
    database_url: str, clock: ManualClock, log: Path
) -> AsyncIterator[tuple[RunningGateway, str, Observed]]:
    if shutil.which("node") is None or not (TS_APP / "node_modules" / "inngest").is_dir():
        pytest.skip("needs Node.js and `npm ci` in tests/test_checkpoint/ts_app (scripts/test runs it)")
    async with (
        running_gateway(
            database_url, clock=clock, dev=False, signing_key=SIGNING_KEY, event_keys=[EVENT_KEY]
        ) as gw,
        typescript_app(
            "claim_flow_app.js",
            log,
            ready_path="/observed",
            GATEWAY_URL=gw.url,
            INNGEST_SIGNING_KEY=SIGNING_KEY,
        ) as url,
    ):

        async def observed() -> dict[str, Any]:
            async with httpx.AsyncClient() as http:
                answer: dict[str, Any] = (await http.get(f"{url}/observed")).json()
                return answer

        await gw.gateway.caller.request_sync(f"{url}/api/inngest")
        yield gw, "tsflow", observed


@pytest.fixture(params=["python", "typescript"])
async def sdk_app(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[RunningGateway, str, Observed, ManualClock]]:
    clock = ManualClock()
    if request.param == "python":
        setup = python_sdk(database_url, clock)
    else:
        setup = typescript_sdk(database_url, clock, tmp_path / "node.log")
    async with setup as (gw, app, observed):
        yield gw, app, observed, clock


App = tuple[RunningGateway, str, Observed, ManualClock]


async def test_concurrency_per_key(sdk_app: App) -> None:
    gw, app, observed, _ = sdk_app
    functions = {f["id"]: f for f in (await gw.http.get("/v1/functions")).json()["data"]}
    assert functions[f"{app}-limited"]["flow"]["concurrency"] == [{"limit": 2, "key": "event.data.acct"}]
    await gw.send(
        *({"name": f"{app}/limited", "data": {"n": n, "acct": f"acct-{n % 2}"}} for n in range(10)),
        key=EVENT_KEY,
    )
    runs = await all_ended(gw, f"{app}-limited", 10, timeout=60)
    assert {run["status"] for run in runs} == {"Completed"}
    seen = await observed()
    assert seen["most"] == {"acct-0": 2, "acct-1": 2}, seen
    assert sorted(seen["started"]["limited"]) == list(range(10)), seen


async def test_throttle_one_start_per_period(sdk_app: App) -> None:
    gw, app, observed, clock = sdk_app
    await gw.send(*({"name": f"{app}/paced", "data": {"n": n}} for n in range(3)), key=EVENT_KEY)

    async def starts(count: int) -> None:
        async def reached() -> bool:
            return len((await observed())["started"].get("paced", [])) >= count

        await eventually(reached, timeout=30)
        await asyncio.sleep(0.4)
        assert len((await observed())["started"]["paced"]) == count

    await starts(1)
    clock.advance(60)
    await starts(2)
    clock.advance(60)
    await starts(3)
    await all_ended(gw, f"{app}-paced", 3)
    assert (await observed())["started"]["paced"] == [0, 1, 2]


async def test_priority_moves_a_run_ahead(sdk_app: App) -> None:
    gw, app, observed, _ = sdk_app
    await gw.send({"name": f"{app}/ranked", "data": {"n": 0, "p": 0}}, key=EVENT_KEY)

    async def first_started() -> bool:
        return bool((await observed())["started"].get("ranked"))

    await eventually(first_started, timeout=30)
    await gw.send(*({"name": f"{app}/ranked", "data": {"n": n, "p": 0}} for n in (1, 2)), key=EVENT_KEY)
    await gw.send({"name": f"{app}/ranked", "data": {"n": 3, "p": 120}}, key=EVENT_KEY)
    await all_ended(gw, f"{app}-ranked", 4, timeout=60)
    assert (await observed())["started"]["ranked"] == [0, 3, 1, 2]
    assert (await observed())["most"]["ranked"] == 1


async def test_finish_timeout_cancels_a_run_that_sleeps_too_long(sdk_app: App) -> None:
    gw, app, _, clock = sdk_app
    [short] = await gw.send({"name": f"{app}/timed", "data": {"n": 0, "nap_s": 30}}, key=EVENT_KEY)
    [long] = await gw.send({"name": f"{app}/timed", "data": {"n": 1, "nap_s": 3600}}, key=EVENT_KEY)

    async def both_asleep() -> bool:
        for event_id in (short, long):
            runs = await gw.runs_of(event_id)
            if not runs or not any(s["op"] == "Sleep" for s in (await gw.run(runs[0]["id"]))["steps"]):
                return False
        return True

    await eventually(both_asleep, timeout=30)
    clock.advance(31)
    [done] = await gw.finished_runs(short)
    assert done["status"] == "Completed"
    clock.advance(30)
    [run] = await gw.finished_runs(long)
    assert run["status"] == "Cancelled"
    assert run["error"]["name"] == "FunctionTimeoutError"
