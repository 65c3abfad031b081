"""Errors: in a step (retry, fail for good), as error memos, and out of the function itself."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
import stepline

from .conftest import call_body, sha1

client = stepline.Client("app", dev=True)


def fail(kind: str) -> None:
    if kind == "value":
        raise ValueError("the value is wrong")
    if kind == "non-retriable":
        raise stepline.NonRetriableError("never again")
    raise stepline.RetryAfterError("later please", 60)


@client.function(id="failing-step", trigger="test/go")
async def failing_step(ctx: stepline.Context) -> None:
    await ctx.step.run("fail", fail, ctx.event.data["kind"])


@client.function(id="catches", trigger="test/go")
async def catches(ctx: stepline.Context) -> dict[str, Any]:
    try:
        await ctx.step.run("fail", fail, "value")
    except stepline.StepError as err:
        return {"caught": err.name, "message": err.message, "stack": err.stack}
    return {"caught": None}


@client.function(id="raises", trigger="test/go")
async def raises(ctx: stepline.Context) -> None:
    kind = ctx.event.data["kind"]
    if kind == "runtime":
        raise RuntimeError("the function broke")
    if kind == "step-error":
        await ctx.step.run("fail", fail, "value")
    if kind == "non-retriable":
        raise stepline.NonRetriableError("stop the run")
    raise stepline.RetryAfterError("not yet", datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC))


def event(kind: str) -> dict[str, Any]:
    return {"name": "test/go", "data": {"kind": kind}}


@pytest.mark.parametrize(("attempt", "op"), [(0, "StepError"), (3, "StepError"), (4, "StepFailed")])
async def test_a_failing_step_errors_until_its_last_attempt(serve: Any, attempt: int, op: str) -> None:
    served = await serve([failing_step])
    res = await served.call(
        "app-failing-step", call_body(event=event("value"), attempt=attempt, max_attempts=5)
    )
    assert res.status_code == 206
    [reported] = res.json()
    assert {k: v for k, v in reported.items() if k != "error"} == {
        "id": sha1("fail"),
        "op": op,
        "name": "fail",
        "displayName": "fail",
    }
    assert reported["error"]["name"] == "ValueError"
    assert reported["error"]["message"] == "the value is wrong"
    assert "raise ValueError" in reported["error"]["stack"]
    assert ("x-inngest-no-retry" in res.headers) == (op == "StepFailed")


async def test_a_non_retriable_error_fails_the_step_at_once(serve: Any) -> None:
    served = await serve([failing_step])
    res = await served.call("app-failing-step", call_body(event=event("non-retriable"), attempt=0))
    [reported] = res.json()
    assert (reported["op"], reported["error"]["name"]) == ("StepFailed", "NonRetriableError")
    assert res.headers["x-inngest-no-retry"] == "true"


async def test_retry_after_in_a_step_sets_the_retry_after_header(serve: Any) -> None:
    served = await serve([failing_step])
    before = datetime.datetime.now(datetime.UTC)
    res = await served.call("app-failing-step", call_body(event=event("retry-after")))
    [reported] = res.json()
    assert reported["op"] == "StepError"
    retry_at = datetime.datetime.fromisoformat(res.headers["retry-after"])
    assert before + datetime.timedelta(seconds=59) < retry_at < before + datetime.timedelta(seconds=62)


async def test_an_error_memo_raises_a_step_error_the_function_can_catch(serve: Any) -> None:
    served = await serve([catches])
    memo = {"error": {"name": "ValueError", "message": "bad value", "stack": "Traceback..."}}
    res = await served.call("app-catches", call_body(steps={sha1("fail"): memo}))
    assert res.status_code == 200
    assert res.json() == {"caught": "ValueError", "message": "bad value", "stack": "Traceback..."}


async def test_an_uncaught_step_error_fails_the_run_without_retry(serve: Any) -> None:
    served = await serve([raises])
    memo = {"error": {"name": "ValueError", "message": "bad value", "stack": None}}
    res = await served.call("app-raises", call_body(event=event("step-error"), steps={sha1("fail"): memo}))
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "true"
    assert res.json() == {"name": "ValueError", "message": "bad value", "stack": None}


async def test_an_ordinary_function_error_is_retriable(serve: Any) -> None:
    served = await serve([raises])
    res = await served.call("app-raises", call_body(event=event("runtime")))
    assert res.status_code == 500
    assert "x-inngest-no-retry" not in res.headers
    assert res.json()["name"] == "RuntimeError"
    assert res.json()["message"] == "the function broke"
    assert "RuntimeError: the function broke" in res.json()["stack"]


async def test_a_non_retriable_function_error_says_no_retry(serve: Any) -> None:
    served = await serve([raises])
    res = await served.call("app-raises", call_body(event=event("non-retriable")))
    assert (res.status_code, res.headers["x-inngest-no-retry"]) == (500, "true")
    assert res.json()["name"] == "NonRetriableError"


async def test_a_retry_after_function_error_carries_the_time(serve: Any) -> None:
    served = await serve([raises])
    res = await served.call("app-raises", call_body(event=event("retry-after")))
    assert res.status_code == 500
    assert "x-inngest-no-retry" not in res.headers
    assert res.headers["retry-after"] == "2030-01-02T03:04:05.000Z"


async def test_steps_cannot_be_nested(serve: Any) -> None:
    @client.function(id="nests", trigger="test/go")
    async def nests(ctx: stepline.Context) -> None:
        async def outer() -> str:
            return await ctx.step.run("inner", str, "x")

        await ctx.step.run("outer", outer)

    served = await serve([nests])
    res = await served.call("app-nests", call_body())
    [reported] = res.json()
    assert (reported["op"], reported["name"]) == ("StepFailed", "outer")
    assert "cannot be nested" in reported["error"]["message"]


async def test_a_step_output_must_be_json(serve: Any) -> None:
    @client.function(id="bad-output", trigger="test/go")
    async def bad_output(ctx: stepline.Context) -> None:
        await ctx.step.run("obj", object)

    served = await serve([bad_output])
    [reported] = (await served.call("app-bad-output", call_body())).json()
    assert reported["op"] == "StepFailed"
    assert reported["error"]["name"] == "OutputUnserializableError"


async def test_a_failed_gather_sibling_fails_the_run_and_leaves_no_task_behind(serve: Any) -> None:
    @client.function(id="half-failed", trigger="test/go")
    async def half_failed(ctx: stepline.Context) -> Any:
        return await asyncio.gather(ctx.step.run("fail", fail, "value"), ctx.step.run("other", str, "x"))

    served = await serve([half_failed])
    memo = {"error": {"name": "ValueError", "message": "bad value", "stack": None}}
    res = await served.call("app-half-failed", call_body(steps={sha1("fail"): memo}))
    assert (res.status_code, res.headers["x-inngest-no-retry"]) == (500, "true")
    assert res.json()["message"] == "bad value"
