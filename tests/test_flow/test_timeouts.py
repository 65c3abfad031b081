"""Timeouts on the test clock: a run queued longer than ``timeouts.start`` before its first call, or running
longer than ``timeouts.finish`` since it, is cancelled like a cancel from the API (status Cancelled,
``inngest/function.cancelled`` emitted), with an error naming the timeout; one within them is not."""

from __future__ import annotations

import datetime
from typing import Any

import stepline
import stepline.asgi
from stepline_gateway.clock import ManualClock

from tests.services import OverlapService
from tests.support import RunningGateway, eventually, running_gateway, serve
from tests.test_flow.support import all_ended, flow_route, holds


async def _cancelled_events(gw: RunningGateway) -> list[dict[str, Any]]:
    page = await gw.http.get("/v1/events", params={"name": "inngest/function.cancelled"})
    events: list[dict[str, Any]] = page.json()["data"]
    return events


async def test_a_run_that_waits_past_its_start_timeout_is_cancelled(database_url: str) -> None:
    clock = ManualClock()
    service = OverlapService(hold_s=2.0)
    async with service.serving() as url, running_gateway(database_url, clock=clock) as gw:
        await gw.publish(
            flow_route("to-start", url, "tos/go", concurrency=[{"limit": 1}], timeouts={"start": "10s"})
        )
        await gw.send({"name": "tos/go", "data": {"n": 0}})
        await eventually(holds(lambda: service.calls == 1))
        [late] = await gw.send({"name": "tos/go", "data": {"n": 1}})
        # The first run started in time (its timer changes nothing); the second waits for the slot.
        clock.advance(11)
        [run] = await gw.finished_runs(late)
        assert run["status"] == "Cancelled"
        assert run["error"]["name"] == "FunctionTimeoutError"
        assert "timeouts.start (10s)" in run["error"]["message"]
        runs = await all_ended(gw, "to-start", 2)
        assert sorted(r["status"] for r in runs) == ["Cancelled", "Completed"]
        assert service.started == [0]
        [cancelled] = await eventually(lambda: _cancelled_events(gw))
        assert cancelled["data"]["run_id"] == run["id"]


async def test_a_run_that_outlasts_its_finish_timeout_is_cancelled_while_it_sleeps(database_url: str) -> None:
    clock = ManualClock()
    async with running_gateway(database_url, clock=clock) as gw:
        client = stepline.Client("naps", gateway_url=gw.url, dev=True)

        @client.function(
            id="long-nap",
            trigger="naps/go",
            timeouts=stepline.flow.Timeouts(finish="1m"),
            concurrency=1,
        )
        async def long_nap(ctx: stepline.Context) -> str:
            await ctx.step.run("before", lambda: "awake")
            await ctx.step.sleep("nap", datetime.timedelta(seconds=int(ctx.event.data["nap_s"])))
            return "done"

        async with serve(stepline.asgi.serve_app(client, [long_nap])) as app_url:
            await _finish_timeout_scenario(gw, clock, app_url)
            await client.aclose()


async def _finish_timeout_scenario(gw: RunningGateway, clock: ManualClock, app_url: str) -> None:
    """A sleep of 30 s under timeouts.finish of 1m completes; a sleep of an hour is cancelled."""
    await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
    [short] = await gw.send({"name": "naps/go", "data": {"nap_s": 30}})

    await eventually(asleep_run(gw, short))
    clock.advance(31)
    [done] = await gw.finished_runs(short)
    assert done["status"] == "Completed"

    [long] = await gw.send({"name": "naps/go", "data": {"nap_s": 3600}})
    await eventually(asleep_run(gw, long))
    clock.advance(61)
    [run] = await gw.finished_runs(long)
    assert run["status"] == "Cancelled"
    assert "timeouts.finish (1m)" in run["error"]["message"]


def asleep_run(gw: RunningGateway, event_id: str) -> Any:
    async def check() -> bool:
        runs = await gw.runs_of(event_id)
        return bool(runs) and any(s["op"] == "Sleep" for s in (await gw.run(runs[0]["id"]))["steps"])

    return check
