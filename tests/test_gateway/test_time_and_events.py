"""Time and events: sleep, waits, invoke, cancel, failure handlers, delayed events and cron, on a gateway
whose clock the test moves (nothing waits for real). Every scenario runs against the same functions written
twice: with Stepline's SDK and with the official Inngest Python SDK."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import fastapi
import inngest
import inngest.fast_api
import pytest
import stepline
import stepline.fastapi
from stepline_gateway.clock import ManualClock

from tests.support import RunningGateway, eventually, free_port, running_gateway, serve

HOUR = datetime.timedelta(hours=1)


@dataclass
class Record:
    calls: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    ticks: list[str] = field(default_factory=list)


def build_inngest_app(gateway_url: str, record: Record) -> fastapi.FastAPI:
    client = inngest.Inngest(
        app_id="timely", is_production=False, api_base_url=gateway_url, event_api_base_url=gateway_url
    )

    def note(name: str) -> str:
        record.calls.append(name)
        return name

    @client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="timely/sleep"))
    async def sleeper(ctx: inngest.Context) -> list[str]:
        before = await ctx.step.run("before", lambda: note("before"))
        await ctx.step.sleep("nap", HOUR)
        after = await ctx.step.run("after", lambda: note("after"))
        return [before, after]

    @client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="timely/order"))
    async def waiter(ctx: inngest.Context) -> dict[str, Any]:
        approval = await ctx.step.wait_for_event(
            "approval",
            event="timely/approved",
            if_exp="event.data.order == async.data.order",
            timeout=HOUR,
        )
        return {"approved_by": approval.data["by"] if approval else None}

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="timely/child"))
    async def child(ctx: inngest.Context) -> int:
        if ctx.event.data.get("explode"):
            raise inngest.NonRetriableError("the child exploded")
        return int(ctx.event.data["n"]) * 2

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="timely/parent"))
    async def parent(ctx: inngest.Context) -> Any:
        try:
            return await ctx.step.invoke("double", function=child, data=dict(ctx.event.data))
        except Exception as err:  # the child's failure raises here
            return f"child failed: {err}"

    @client.create_function(
        fn_id="cancellable",
        trigger=inngest.TriggerEvent(event="timely/start"),
        cancel=[inngest.Cancel(event="timely/stop", if_exp="event.data.job == async.data.job")],
    )
    async def cancellable(ctx: inngest.Context) -> str:
        await ctx.step.run("one", lambda: note("one"))
        await ctx.step.sleep("pause", HOUR)
        await ctx.step.run("two", lambda: note("two"))
        return "finished"

    async def on_failure(ctx: inngest.Context) -> None:
        record.failures.append(dict(ctx.event.data))

    @client.create_function(
        fn_id="fragile",
        trigger=inngest.TriggerEvent(event="timely/fragile"),
        on_failure=on_failure,
        retries=0,
    )
    async def fragile(ctx: inngest.Context) -> None:
        raise inngest.NonRetriableError("fragile broke")

    @client.create_function(fn_id="ticker", trigger=inngest.TriggerCron(cron="*/5 * * * *"))
    async def ticker(ctx: inngest.Context) -> str:
        record.ticks.append(ctx.event.data["scheduled_at"])
        return "tick"

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [sleeper, waiter, child, parent, cancellable, fragile, ticker])
    return app


def build_stepline_app(gateway_url: str, record: Record) -> fastapi.FastAPI:
    client = stepline.Client("timely", gateway_url=gateway_url, dev=True)

    def note(name: str) -> str:
        record.calls.append(name)
        return name

    @client.function(id="sleeper", trigger="timely/sleep")
    async def sleeper(ctx: stepline.Context) -> list[str]:
        before = await ctx.step.run("before", note, "before")
        await ctx.step.sleep("nap", HOUR)
        after = await ctx.step.run("after", note, "after")
        return [before, after]

    @client.function(id="waiter", trigger="timely/order")
    async def waiter(ctx: stepline.Context) -> dict[str, Any]:
        approval = await ctx.step.wait_for_event(
            "approval", event="timely/approved", if_exp="event.data.order == async.data.order", timeout=HOUR
        )
        return {"approved_by": approval.data["by"] if approval else None}

    @client.function(id="child", trigger="timely/child")
    async def child(ctx: stepline.Context) -> int:
        if ctx.event.data.get("explode"):
            raise stepline.NonRetriableError("the child exploded")
        return int(ctx.event.data["n"]) * 2

    @client.function(id="parent", trigger="timely/parent")
    async def parent(ctx: stepline.Context) -> Any:
        try:
            return await ctx.step.invoke("double", function=child, data=dict(ctx.event.data))
        except stepline.StepError as err:
            return f"child failed: {err}"

    @client.function(
        id="cancellable",
        trigger="timely/start",
        cancel_on=[stepline.Cancel(event="timely/stop", if_exp="event.data.job == async.data.job")],
    )
    async def cancellable(ctx: stepline.Context) -> str:
        await ctx.step.run("one", note, "one")
        await ctx.step.sleep("pause", HOUR)
        await ctx.step.run("two", note, "two")
        return "finished"

    async def on_failure(ctx: stepline.Context) -> None:
        record.failures.append(dict(ctx.event.data))

    @client.function(id="fragile", trigger="timely/fragile", on_failure=on_failure, retries=0)
    async def fragile(ctx: stepline.Context) -> None:
        raise stepline.NonRetriableError("fragile broke")

    @client.function(id="ticker", trigger=stepline.TriggerCron(cron="*/5 * * * *"))
    async def ticker(ctx: stepline.Context) -> str:
        record.ticks.append(ctx.event.data["scheduled_at"])
        return "tick"

    app = fastapi.FastAPI()
    stepline.fastapi.serve(app, client, [sleeper, waiter, child, parent, cancellable, fragile, ticker])
    return app


Builder = Callable[[str, Record], fastapi.FastAPI]


@pytest.fixture(params=["stepline", "inngest"])
def build_app(request: pytest.FixtureRequest) -> Builder:
    """The same functions, written with Stepline's SDK or with the official Inngest SDK."""
    builder: Builder = build_stepline_app if request.param == "stepline" else build_inngest_app
    return builder


@contextlib.asynccontextmanager
async def timely(
    database_url: str, clock: ManualClock, build_app: Builder
) -> AsyncIterator[tuple[RunningGateway, Record, str]]:
    record = Record()
    async with running_gateway(database_url, clock=clock) as gw, serve(build_app(gw.url, record)) as app_url:
        await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
        yield gw, record, app_url


async def status_of(gw: RunningGateway, event_id: str) -> str | None:
    runs = await gw.runs_of(event_id)
    return runs[0]["status"] if runs else None


async def step_status(gw: RunningGateway, event_id: str, name: str) -> str | None:
    runs = await gw.runs_of(event_id)
    if not runs:
        return None
    steps = {s["name"]: s["status"] for s in (await gw.run(runs[0]["id"]))["steps"]}
    return steps.get(name)


async def test_sleep_holds_nothing_and_survives_a_gateway_restart(
    database_url: str, build_app: Builder
) -> None:
    clock = ManualClock()
    record = Record()
    port = free_port()
    async with (
        running_gateway(database_url, clock=clock) as gw,
        serve(build_app(gw.url, record), port) as app_url,
    ):
        await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
        [event_id] = await gw.send({"name": "timely/sleep", "data": {}})
        assert await eventually(lambda: step_status(gw, event_id, "nap")) == "Sleeping"
        assert gw.gateway.metrics.inflight._value.get() == 0  # no call and no worker held while asleep
    # The gateway is gone; a new one, an hour later, wakes the run.
    clock.advance(HOUR.total_seconds() + 1)
    async with running_gateway(database_url, clock=clock) as gw, serve(build_app(gw.url, record), port):
        [run] = await gw.finished_runs(event_id)
    assert run["status"] == "Completed"
    assert run["output"] == ["before", "after"]
    assert record.calls == ["before", "after"]


async def test_wait_for_event_matches_ignores_and_times_out(database_url: str, build_app: Builder) -> None:
    clock = ManualClock()
    async with timely(database_url, clock, build_app) as (gw, _, _):
        [matched, unmatched] = await gw.send(
            {"name": "timely/order", "data": {"order": 1}}, {"name": "timely/order", "data": {"order": 2}}
        )
        for event_id in (matched, unmatched):
            assert await eventually(lambda e=event_id: step_status(gw, e, "approval")) == "Waiting"
        await gw.send({"name": "timely/approved", "data": {"order": 3, "by": "nobody"}})
        await gw.send({"name": "timely/approved", "data": {"order": 1, "by": "ada"}})
        [run] = await gw.finished_runs(matched)
        assert run["output"] == {"approved_by": "ada"}
        await asyncio.sleep(0.2)
        assert await status_of(gw, unmatched) == "Running"
        clock.advance(HOUR.total_seconds() + 1)
        [timed_out] = await gw.finished_runs(unmatched)
        assert timed_out["output"] == {"approved_by": None}


async def test_invoke_returns_the_childs_output_and_raises_its_failure(
    database_url: str, build_app: Builder
) -> None:
    async with timely(database_url, ManualClock(), build_app) as (gw, _, _):
        [ok, bad] = await gw.send(
            {"name": "timely/parent", "data": {"n": 21}}, {"name": "timely/parent", "data": {"explode": True}}
        )
        [parent] = await gw.finished_runs(ok)
        assert parent["output"] == 42
        [failed_parent] = await gw.finished_runs(bad)
        children = (await gw.http.get("/v1/runs", params={"function": "timely-child"})).json()["data"]
        assert len(children) == 2
        assert {c["status"] for c in children} == {"Completed", "Failed"}
        assert failed_parent["status"] == "Completed"
        assert "the child exploded" in failed_parent["output"]


async def test_cancel_on_event_stops_the_run_between_steps(database_url: str, build_app: Builder) -> None:
    async with timely(database_url, ManualClock(), build_app) as (gw, record, _):
        [keep, stop] = await gw.send(
            {"name": "timely/start", "data": {"job": "keep"}},
            {"name": "timely/start", "data": {"job": "stop"}},
        )
        for event_id in (keep, stop):
            assert await eventually(lambda e=event_id: step_status(gw, e, "pause")) == "Sleeping"
        await gw.send({"name": "timely/stop", "data": {"job": "stop"}})
        assert await eventually(lambda: status_of(gw, stop)) == "Cancelled"
        assert await status_of(gw, keep) == "Running"
        cancelled = (await gw.http.get("/v1/events", params={"name": "inngest/function.cancelled"})).json()
        assert [e["data"]["run_id"] for e in cancelled["data"]] == [(await gw.runs_of(stop))[0]["id"]]
        assert record.calls.count("two") == 0


async def test_cancel_through_the_api_emits_the_cancelled_event(
    database_url: str, build_app: Builder
) -> None:
    async with timely(database_url, ManualClock(), build_app) as (gw, _, _):
        [event_id] = await gw.send({"name": "timely/start", "data": {"job": "x"}})
        assert await eventually(lambda: step_status(gw, event_id, "pause")) == "Sleeping"
        run_id = (await gw.runs_of(event_id))[0]["id"]
        assert (await gw.http.post(f"/v1/runs/{run_id}/cancel")).status_code == 200
        cancelled = (await gw.http.get("/v1/events", params={"name": "inngest/function.cancelled"})).json()
        assert [e["data"]["run_id"] for e in cancelled["data"]] == [run_id]


async def test_a_failure_handler_runs_once_with_the_failed_run(database_url: str, build_app: Builder) -> None:
    async with timely(database_url, ManualClock(), build_app) as (gw, record, _):
        [event_id] = await gw.send({"name": "timely/fragile", "data": {}})
        [failed] = await gw.finished_runs(event_id)
        assert failed["status"] == "Failed"
        await eventually(lambda: _async_len(record.failures))
        await asyncio.sleep(0.3)
        assert len(record.failures) == 1
        assert record.failures[0]["run_id"] == failed["id"]
        assert record.failures[0]["function_id"] == "timely-fragile"
        assert "fragile broke" in record.failures[0]["error"]["message"]


async def _async_len(items: list[Any]) -> int:
    return len(items)


async def _at_least(items: list[Any], count: int) -> bool:
    return len(items) >= count


async def _at_least(items: list[Any], count: int) -> bool:
    return len(items) >= count


async def test_a_delayed_event_starts_its_run_at_its_time(database_url: str, build_app: Builder) -> None:
    clock = ManualClock()
    async with timely(database_url, clock, build_app) as (gw, _, _):
        later = int((clock.now() + HOUR).timestamp() * 1000)
        [event_id] = await gw.send({"name": "timely/child", "data": {"n": 1}, "ts": later})
        await asyncio.sleep(0.3)
        assert await status_of(gw, event_id) == "Queued"
        clock.advance(HOUR.total_seconds())
        [run] = await gw.finished_runs(event_id)
        assert run["output"] == 2


async def test_cron_fires_once_per_tick_across_two_replicas(database_url: str, build_app: Builder) -> None:
    # One minute past the next full hour: after the functions exist, as a real clock would be.
    start = datetime.datetime.now(datetime.UTC).replace(minute=1, second=0, microsecond=0)
    start += datetime.timedelta(hours=1)
    clocks = (ManualClock(start), ManualClock(start))
    record = Record()
    async with (
        running_gateway(database_url, clock=clocks[0]) as first,
        running_gateway(database_url, clock=clocks[1]) as second,
        serve(build_app(first.url, record)) as app_url,
    ):
        await first.gateway.caller.request_sync(f"{app_url}/api/inngest")
        await eventually(lambda: _routed(second, "timely-ticker"))
        await eventually(lambda: _routed(first, "timely-ticker"))
        # The tick at the full hour fell before the gateways started: it is caught up once.
        await eventually(lambda: _at_least(record.ticks, 1))
        await eventually(lambda: _ticker_runs_completed(first, 1))
        for expected in (2, 3, 4):
            # The clocks jump only once the previous tick's run has ended: a jump of five minutes would
            # otherwise expire the lease of a call still in flight and hand it to the other replica.
            for clock in clocks:
                clock.advance(300)
            await eventually(lambda n=expected: _ticker_runs_completed(first, n))
        await asyncio.sleep(0.3)
        expected = [(start + datetime.timedelta(minutes=m)).isoformat() for m in (-1, 4, 9, 14)]
        assert record.ticks == expected


async def _ticker_runs_completed(gw: RunningGateway, count: int) -> bool:
    runs = (await gw.http.get("/v1/runs", params={"function": "timely-ticker"})).json()["data"]
    return len(runs) >= count and all(run["status"] == "Completed" for run in runs)


async def _routed(gw: RunningGateway, function_id: str) -> bool:
    return function_id in gw.gateway.routes.functions
