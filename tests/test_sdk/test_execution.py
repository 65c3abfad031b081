"""Answering calls: memos, new steps, parallel and targeted steps, and the function's own result."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import stepline

from .conftest import call_body, sha1

client = stepline.Client("app", dev=True)
runs: Counter[str] = Counter()


def counted(name: str, value: Any = None) -> Any:
    runs[name] += 1
    return value if value is not None else f"{name}-output"


async def counted_async(name: str) -> str:
    await asyncio.sleep(0)
    runs[name] += 1
    return f"{name}-output"


@client.function(id="two-steps", trigger="test/go")
async def two_steps(ctx: stepline.Context) -> dict[str, Any]:
    a = await ctx.step.run("a", counted_async, "a")
    b = await ctx.step.run("b", counted, "b")
    return {"a": a, "b": b, "n": ctx.event.data["n"], "run": ctx.run_id}


@client.function(id="parallel", trigger=stepline.TriggerEvent(event="test/go"))
async def parallel(ctx: stepline.Context) -> list[str]:
    return list(await asyncio.gather(ctx.step.run("a", counted, "a"), ctx.step.run("b", counted_async, "b")))


@client.function(id="repeats", trigger="test/go")
async def repeats(ctx: stepline.Context) -> list[int]:
    return [await ctx.step.run("same", counted, "same", i) for i in (1, 2, 3)]


async def test_a_memoized_step_is_not_run_again_and_the_next_new_step_runs(serve: Any) -> None:
    runs.clear()
    served = await serve([two_steps])
    res = await served.call("app-two-steps", call_body(steps={sha1("a"): {"data": "memo-a"}}))
    assert res.status_code == 206
    assert res.json() == [
        {"id": sha1("b"), "op": "StepRun", "name": "b", "displayName": "b", "data": "b-output"}
    ]
    assert runs == {"b": 1}


async def test_the_first_step_runs_at_once_in_the_first_call(serve: Any) -> None:
    runs.clear()
    served = await serve([two_steps])
    res = await served.call("app-two-steps", call_body())
    assert res.status_code == 206
    assert res.json() == [
        {"id": sha1("a"), "op": "StepRun", "name": "a", "displayName": "a", "data": "a-output"}
    ]
    assert runs == {"a": 1}


async def test_a_function_with_every_step_memoized_finishes_with_its_output(serve: Any) -> None:
    runs.clear()
    served = await serve([two_steps])
    steps = {sha1("a"): {"data": "A"}, sha1("b"): {"data": "B"}}
    res = await served.call("app-two-steps", call_body(steps=steps))
    assert res.status_code == 200
    assert res.json() == {"a": "A", "b": "B", "n": 1, "run": "run-1"}
    assert res.headers["x-inngest-sdk"] == f"stepline-py:v{stepline.__version__}"
    assert res.headers["x-inngest-req-version"] == "2"
    assert res.headers["content-type"] == "application/json"
    assert "x-inngest-no-retry" not in res.headers
    assert runs == {}


async def test_the_bare_function_id_is_accepted_and_an_unknown_one_is_404(serve: Any) -> None:
    served = await serve([two_steps])
    steps = {sha1("a"): {"data": "A"}, sha1("b"): {"data": "B"}}
    assert (await served.call("two-steps", call_body(steps=steps))).status_code == 200
    missing = await served.call("app-nope", call_body())
    assert missing.status_code == 404
    assert "app-nope" in missing.json()["error"]


async def test_parallel_steps_are_planned_in_call_order_without_running(serve: Any) -> None:
    runs.clear()
    served = await serve([parallel])
    res = await served.call("app-parallel", call_body())
    assert res.status_code == 206
    assert res.json() == [
        {"id": sha1("a"), "op": "StepPlanned", "name": "a", "displayName": "a"},
        {"id": sha1("b"), "op": "StepPlanned", "name": "b", "displayName": "b"},
    ]
    assert runs == {}


async def test_a_targeted_step_runs_alone(serve: Any) -> None:
    runs.clear()
    served = await serve([parallel])
    res = await served.call("app-parallel", call_body(), step_id=sha1("b"))
    assert res.status_code == 206
    assert res.json() == [
        {"id": sha1("b"), "op": "StepRun", "name": "b", "displayName": "b", "data": "b-output"}
    ]
    assert runs == {"b": 1}


async def test_parallel_steps_once_memoized_let_the_function_finish(serve: Any) -> None:
    served = await serve([parallel])
    steps = {sha1("b"): {"data": "B"}, sha1("a"): {"data": "A"}}
    res = await served.call("app-parallel", call_body(steps=steps))
    assert (res.status_code, res.json()) == (200, ["A", "B"])


async def test_a_target_that_is_never_reached_is_a_non_retriable_error(serve: Any) -> None:
    served = await serve([parallel])
    res = await served.call("app-parallel", call_body(), step_id=sha1("elsewhere"))
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "true"
    assert res.json()["name"] == "StepNotReachedError"
    assert sha1("elsewhere") in res.json()["message"]


async def test_a_single_new_step_is_planned_when_immediate_execution_is_disabled(serve: Any) -> None:
    runs.clear()
    served = await serve([two_steps])
    res = await served.call("app-two-steps", call_body(disable_immediate_execution=True))
    assert res.json() == [{"id": sha1("a"), "op": "StepPlanned", "name": "a", "displayName": "a"}]
    assert runs == {}


async def test_repeated_step_ids_hash_as_id_then_id_1_then_id_2(serve: Any) -> None:
    runs.clear()
    served = await serve([repeats])
    steps = {sha1("same"): {"data": 10}, sha1("same:1"): {"data": 20}}
    res = await served.call("app-repeats", call_body(steps=steps))
    assert res.json() == [
        {"id": sha1("same:2"), "op": "StepRun", "name": "same", "displayName": "same", "data": 3}
    ]
    steps[sha1("same:2")] = {"data": 30}
    assert (await served.call("app-repeats", call_body(steps=steps))).json() == [10, 20, 30]


async def test_nested_gathers_are_all_planned(serve: Any) -> None:
    async def branch(ctx: stepline.Context, name: str) -> list[str]:
        first = await ctx.step.run(f"{name}-1", counted, f"{name}-1")
        return [first, await ctx.step.run(f"{name}-2", counted, f"{name}-2")]

    async def pair(ctx: stepline.Context) -> Any:
        # Its steps are reached event-loop turns after x-2: discovery must wait for them.
        await asyncio.sleep(0)
        return await asyncio.gather(branch(ctx, "y"), branch(ctx, "z"))

    @client.function(id="nested", trigger="test/go")
    async def nested(ctx: stepline.Context) -> Any:
        return await asyncio.gather(branch(ctx, "x"), pair(ctx))

    served = await serve([nested])
    steps = {sha1("x-1"): {"data": "x1"}, sha1("y-1"): {"data": "y1"}}
    res = await served.call("app-nested", call_body(steps=steps))
    assert [op["name"] for op in res.json()] == ["x-2", "y-2", "z-1"]
    assert {op["op"] for op in res.json()} == {"StepPlanned"}


async def test_event_and_context_reach_the_function(serve: Any) -> None:
    seen: dict[str, Any] = {}

    @client.function(id="ctx", trigger="test/go")
    async def show(ctx: stepline.Context) -> None:
        seen.update(event=ctx.event, events=ctx.events, attempt=ctx.attempt, run_id=ctx.run_id)

    served = await serve([show])
    res = await served.call(
        "app-ctx", call_body(attempt=2, event={"name": "test/go", "data": None, "v": "1"})
    )
    assert (res.status_code, res.content) == (200, b"null")
    assert seen["event"] == stepline.Event(name="test/go", data={}, v="1")
    assert seen["events"] == [seen["event"]]
    assert (seen["attempt"], seen["run_id"]) == (2, "run-1")


async def test_a_malformed_call_body_is_a_400(serve: Any) -> None:
    served = await serve([two_steps])
    res = await served.http.post("/api/inngest?fnId=app-two-steps&stepId=step", content=b'{"event": 3}')
    assert res.status_code == 400
    assert "not valid" in res.json()["error"]


async def test_the_function_output_must_be_json(serve: Any) -> None:
    @client.function(id="unjson", trigger="test/go")
    async def unjson(ctx: stepline.Context) -> Any:
        return {"what": object()}

    served = await serve([unjson])
    res = await served.call("app-unjson", call_body())
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "true"
    assert "not JSON-serializable" in res.json()["message"]


async def test_use_api_is_refused_rather_than_run_without_memos(serve: Any) -> None:
    served = await serve([two_steps])
    res = await served.call("app-two-steps", {**call_body(), "use_api": True})
    assert (res.status_code, res.headers["x-inngest-no-retry"]) == (500, "true")
    assert "use_api" in res.json()["message"]
