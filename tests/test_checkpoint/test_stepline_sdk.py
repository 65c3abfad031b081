"""Stepline's SDK in checkpoint mode (its default flush policy, and a post after every step) and with it
off, on the gateway: the scenarios of the TypeScript tests, the settings (buffered steps, interval, runtime,
step work at risk), and the fallback when the checkpoint API
cannot be reached. The app counts the calls it receives; the gateway marks the steps that were checkpointed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import fastapi
import pytest
import stepline
import stepline.fastapi
from stepline_gateway.clock import Clock, ManualClock
from stepline_gateway.registry import SDK_SOURCE
from stepline_gateway.routing import Function as Route

from tests.support import RunningGateway, eventually, free_port, running_gateway, serve

HOUR = datetime.timedelta(hours=1)


@dataclass
class Service:
    """The app's side: which steps ran, and how many calls each function received."""

    gw: RunningGateway
    client: stepline.Client
    url: str = ""
    steps: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)

    def ran(self, name: str, value: Any = None) -> Any:
        self.steps[name] += 1
        return value

    async def start(self, name: str, data: dict[str, Any] | None = None) -> str:
        [event_id] = await self.gw.send({"name": name, "data": data or {}})
        return event_id

    async def finished(self, event_id: str) -> dict[str, Any]:
        [run] = await self.gw.finished_runs(event_id)
        return run


Define = Callable[[Service], list[stepline.Function]]


@contextlib.asynccontextmanager
async def service(
    database_url: str,
    define: Define,
    *,
    checkpoint: bool | stepline.Checkpoint = True,
    clock: Clock | None = None,
    gateway_url: str | None = None,
) -> AsyncIterator[Service]:
    """A dev-mode gateway and an app of the functions ``define`` makes, synced (or, when the app's client is
    pointed at another ``gateway_url``, published directly)."""
    async with running_gateway(database_url, clock=clock) as gw:
        client = stepline.Client("app", gateway_url=gateway_url or gw.url, dev=True, checkpoint=checkpoint)
        svc = Service(gw, client)
        functions = define(svc)
        app = fastapi.FastAPI()

        @app.middleware("http")
        async def count_calls(request: fastapi.Request, call_next: Any) -> Any:
            if request.method == "POST":
                svc.calls[request.query_params.get("fnId", "")] += 1
            return await call_next(request)

        stepline.fastapi.serve(app, client, functions)
        async with serve(app) as url:
            svc.url = f"{url}/api/inngest"
            if gateway_url is None:
                await gw.gateway.caller.request_sync(svc.url)
            else:
                routes = [
                    Route(
                        id=fn.full_id("app"),
                        app_id="app",
                        name=fn.id,
                        url=svc.url,
                        triggers=[t.model_dump(exclude_none=True) for t in fn.triggers],
                        retries=fn.retries,
                        paused=False,
                        source=SDK_SOURCE,
                    )
                    for fn in functions
                ]
                await gw.gateway.registry.publish(routes, replace_app="app", replace_source=SDK_SOURCE)
                await gw.gateway.reload_routes()
            try:
                yield svc
            finally:
                await client.aclose()


def paths(run: dict[str, Any]) -> dict[str, bool]:
    """Each step the SDK ran -> whether its result came through the checkpoint API."""
    return {s["name"]: s["checkpointed"] for s in run["steps"] if s["op"] in ("StepRun", "StepFailed")}


def steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run["steps"]}


async def step_status(svc: Service, event_id: str, name: str) -> str | None:
    runs = await svc.gw.runs_of(event_id)
    if not runs:
        return None
    return steps(await svc.gw.run(runs[0]["id"])).get(name, {}).get("status")


def scenarios(svc: Service) -> list[stepline.Function]:
    client, ran = svc.client, svc.ran

    @client.function(id="sequential", trigger="app/sequential", retries=3)
    async def sequential(ctx: stepline.Context) -> dict[str, Any]:
        def flaky() -> str:
            ran("flaky")
            if svc.steps["flaky"] == 1:
                raise RuntimeError("flaky fails once")
            return "ok"

        a = await ctx.step.run("first", ran, "first", ctx.event.data["n"] + 1)
        b = await ctx.step.run("flaky", flaky)
        c = await ctx.step.run("third", ran, "third", a * 2)
        return {"a": a, "b": b, "c": c}

    @client.function(id="parallel", trigger="app/parallel")
    async def parallel(ctx: stepline.Context) -> dict[str, int]:
        before = await ctx.step.run("before", ran, "before", 1)
        one, two = await asyncio.gather(
            ctx.step.run("one", ran, "one", 10), ctx.step.run("two", ran, "two", 20)
        )
        after = await ctx.step.run("after", ran, "after", before + one + two)
        return {"before": before, "one": one, "two": two, "after": after}

    @client.function(id="hopeless", trigger="app/hopeless", retries=3)
    async def hopeless(ctx: stepline.Context) -> str:
        def refuse() -> None:
            ran("refuse")
            raise stepline.NonRetriableError("this order cannot be processed")

        await ctx.step.run("check", ran, "check", True)
        await ctx.step.run("refuse", refuse)
        return "unreachable"

    @client.function(id="sleeper", trigger="app/sleep")
    async def sleeper(ctx: stepline.Context) -> list[str]:
        before = await ctx.step.run("before-nap", ran, "before-nap", "before")
        await ctx.step.sleep("nap", HOUR)
        after = await ctx.step.run("after-nap", ran, "after-nap", "after")
        return [before, after]

    @client.function(id="waiter", trigger="app/order")
    async def waiter(ctx: stepline.Context) -> dict[str, Any]:
        order = await ctx.step.run("prepare", ran, "prepare", ctx.event.data["order"])
        approval = await ctx.step.wait_for_event(
            "approval", event="app/approved", timeout=HOUR, if_exp="event.data.order == async.data.order"
        )
        outcome = f"approved by {approval.data['by']}" if approval else "timed out"
        await ctx.step.run("conclude", ran, "conclude", outcome)
        return {"order": order, "outcome": outcome}

    @client.function(id="four", trigger="app/four")
    async def four(ctx: stepline.Context) -> list[int]:
        return [await ctx.step.run(f"s{i}", ran, f"s{i}", i) for i in range(1, 5)]

    return [sequential, parallel, hopeless, sleeper, waiter, four]


@dataclass(frozen=True)
class Mode:
    """A checkpoint setting of the app, and what it makes of a call's steps run back to back."""

    setting: bool | stepline.Checkpoint
    # Whether a call runs several steps (checkpoint mode), and whether it posts each as it ends.
    on: bool
    posts: bool


MODES = {
    # The strictest policy: a post after every step (the official TypeScript SDK's default).
    "every-step": Mode(stepline.Checkpoint.every_step(), on=True, posts=True),
    # The SDK's default: quick steps stay buffered and come with the call's answer.
    "default": Mode(True, on=True, posts=False),
    "off": Mode(False, on=False, posts=False),
}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> Mode:
    return MODES[request.param]


async def test_four_sequential_steps_take_one_call(database_url: str, mode: Mode) -> None:
    async with service(database_url, scenarios, checkpoint=mode.setting) as svc:
        run = await svc.finished(await svc.start("app/four"))
    assert run["output"] == [1, 2, 3, 4]
    assert svc.steps == {"s1": 1, "s2": 1, "s3": 1, "s4": 1}
    assert paths(run) == dict.fromkeys(("s1", "s2", "s3", "s4"), mode.posts)
    assert svc.calls == {"app-four": 1 if mode.on else 5}


async def test_sequential_steps_with_a_retry(database_url: str, mode: Mode) -> None:
    async with service(database_url, scenarios, checkpoint=mode.setting) as svc:
        run = await svc.finished(await svc.start("app/sequential", {"n": 20}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"a": 21, "b": "ok", "c": 42}
    assert svc.steps == {"first": 1, "flaky": 2, "third": 1}
    assert steps(run)["flaky"]["attempts"] == 2
    # With checkpoints: "first" and the failed "flaky" in call 1, the retry of "flaky" alone, then "third".
    assert paths(run) == {"first": mode.posts, "flaky": False, "third": mode.posts}
    assert svc.calls == {"app-sequential": 3 if mode.on else 5}


async def test_parallel_steps(database_url: str, mode: Mode) -> None:
    async with service(database_url, scenarios, checkpoint=mode.setting) as svc:
        run = await svc.finished(await svc.start("app/parallel"))
    assert run["output"] == {"before": 1, "one": 10, "two": 20, "after": 31}
    assert svc.steps == {"before": 1, "one": 1, "two": 1, "after": 1}
    assert paths(run) == {"before": mode.posts, "one": False, "two": False, "after": mode.posts}
    assert svc.calls == {"app-parallel": 4 if mode.on else 6}


async def test_a_non_retriable_error_fails_the_run_at_once(database_url: str, mode: Mode) -> None:
    async with service(database_url, scenarios, checkpoint=mode.setting) as svc:
        run = await svc.finished(await svc.start("app/hopeless"))
    assert run["status"] == "Failed", run
    assert "cannot be processed" in run["error"]["message"]
    assert svc.steps == {"check": 1, "refuse": 1}
    assert steps(run)["refuse"]["status"] == "Failed"
    assert paths(run) == {"check": mode.posts, "refuse": False}
    assert svc.calls == {"app-hopeless": 2 if mode.on else 3}


async def test_sleep(database_url: str, mode: Mode) -> None:
    clock = ManualClock()
    async with service(database_url, scenarios, checkpoint=mode.setting, clock=clock) as svc:
        event_id = await svc.start("app/sleep")
        assert await eventually(lambda: step_status(svc, event_id, "nap")) == "Sleeping"
        clock.advance(HOUR.total_seconds() + 1)
        run = await svc.finished(event_id)
    assert run["output"] == ["before", "after"]
    assert svc.steps == {"before-nap": 1, "after-nap": 1}
    assert paths(run) == {"before-nap": mode.posts, "after-nap": mode.posts}
    assert svc.calls == {"app-sleeper": 2 if mode.on else 4}


async def test_wait_for_event(database_url: str, mode: Mode) -> None:
    clock = ManualClock()
    async with service(database_url, scenarios, checkpoint=mode.setting, clock=clock) as svc:
        approved = await svc.start("app/order", {"order": 7})
        expired = await svc.start("app/order", {"order": 8})
        for event_id in (approved, expired):
            assert await eventually(lambda e=event_id: step_status(svc, e, "approval")) == "Waiting"
        await svc.start("app/approved", {"order": 7, "by": "ada"})
        run = await svc.finished(approved)
        clock.advance(HOUR.total_seconds() + 1)
        timed_out = await svc.finished(expired)
    assert run["output"] == {"order": 7, "outcome": "approved by ada"}
    assert timed_out["output"] == {"order": 8, "outcome": "timed out"}
    for each in (run, timed_out):
        assert paths(each) == {"prepare": mode.posts, "conclude": mode.posts}
    assert svc.calls == {"app-waiter": 4 if mode.on else 8}


def batched(svc: Service) -> list[stepline.Function]:
    client, ran = svc.client, svc.ran

    async def checkpointed(run_id: str, name: str) -> bool:
        return bool(paths(await svc.gw.run(run_id)).get(name))

    async def once_checkpointed(run_id: str, name: str) -> str:
        await eventually(lambda: checkpointed(run_id, name))
        return ran("waited", "waited")

    @client.function(
        id="batched",
        trigger="app/batched",
        checkpoint=stepline.Checkpoint(buffered_steps=3, max_at_risk=None),
    )
    async def batched(ctx: stepline.Context) -> list[Any]:
        return [await ctx.step.run(f"b{i}", ran, f"b{i}", i) for i in range(1, 6)]

    @client.function(
        id="timed",
        trigger="app/timed",
        checkpoint=stepline.Checkpoint(buffered_steps=100, max_interval=0.01, max_at_risk=None),
    )
    async def timed(ctx: stepline.Context) -> list[Any]:
        first = await ctx.step.run("t1", ran, "t1", 1)
        # Runs until the interval's post has reported "t1", whatever the speed of the machine.
        waited = await ctx.step.run("t2", once_checkpointed, ctx.run_id, "t1")
        return [first, waited, await ctx.step.run("t3", ran, "t3", 3)]

    @client.function(
        id="short", trigger="app/short", checkpoint=stepline.Checkpoint.every_step(max_runtime=1e-6)
    )
    async def short(ctx: stepline.Context) -> list[Any]:
        return [await ctx.step.run(f"r{i}", ran, f"r{i}", i) for i in range(1, 4)]

    @client.function(id="unchecked", trigger="app/unchecked", checkpoint=False)
    async def unchecked(ctx: stepline.Context) -> list[Any]:
        return [await ctx.step.run(f"u{i}", ran, f"u{i}", i) for i in range(1, 3)]

    return [batched, timed, short, unchecked]


async def test_buffered_steps_are_posted_in_batches_and_the_rest_comes_with_the_end(
    database_url: str,
) -> None:
    async with service(database_url, batched) as svc:
        run = await svc.finished(await svc.start("app/batched"))
    assert run["output"] == [1, 2, 3, 4, 5]
    # b1-b3 are posted when the buffer is full; b4 and b5 come in the call's answer, with RunComplete.
    assert paths(run) == {"b1": True, "b2": True, "b3": True, "b4": False, "b5": False}
    assert svc.calls == {"app-batched": 1}


async def test_max_interval_posts_what_is_buffered_while_a_step_runs(database_url: str) -> None:
    async with service(database_url, batched) as svc:
        run = await svc.finished(await svc.start("app/timed"))
    assert run["output"] == [1, "waited", 3]
    # t1 was posted by the interval while t2 ran (t2 waited for it). t2 and t3 come with the end, or by a
    # later tick when the event loop lags by more than the interval (a loaded machine).
    recorded = paths(run)
    assert recorded["t1"] is True
    assert set(recorded) == {"t1", "t2", "t3"}
    assert svc.calls == {"app-timed": 1}


async def test_max_runtime_ends_the_call_with_a_discovery_request(database_url: str) -> None:
    async with service(database_url, batched) as svc:
        run = await svc.finished(await svc.start("app/short"))
    assert run["output"] == [1, 2, 3]
    assert svc.steps == {"r1": 1, "r2": 1, "r3": 1}
    # Each call runs one step, then asks for a new call (DiscoveryRequest) before the next one.
    assert paths(run) == {"r1": True, "r2": True, "r3": True}
    assert svc.calls == {"app-short": 3}


async def test_a_function_can_turn_checkpointing_off(database_url: str) -> None:
    async with service(database_url, batched) as svc:
        run = await svc.finished(await svc.start("app/unchecked"))
        functions = {f["id"]: f for f in (await svc.gw.http.get("/v1/functions")).json()["data"]}
    assert paths(run) == {"u1": False, "u2": False}
    assert svc.calls == {"app-unchecked": 3}
    # The sync reports each function's settings; the gateway keeps them.
    assert functions["app-unchecked"]["checkpoint"] is None
    assert functions["app-batched"]["checkpoint"] == {
        "batch_steps": 3,
        "batch_interval": "0s",
        "max_runtime": "10s",
    }
    assert functions["app-timed"]["checkpoint"]["batch_interval"] == "10ms"


async def test_when_the_checkpoint_api_cannot_be_reached_the_steps_come_in_the_answers(
    database_url: str,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    every_step = stepline.Checkpoint.every_step()
    async with service(database_url, scenarios, checkpoint=every_step, gateway_url=nowhere) as svc:
        run = await svc.finished(await svc.start("app/four"))
    assert run["output"] == [1, 2, 3, 4]
    # No result is lost and none is run twice: each call's answer carries the step it ran.
    assert svc.steps == {"s1": 1, "s2": 1, "s3": 1, "s4": 1}
    assert paths(run) == dict.fromkeys(("s1", "s2", "s3", "s4"), False)
    assert svc.calls == {"app-four": 5}
