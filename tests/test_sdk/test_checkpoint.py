"""Checkpoint mode, the SDK's side: what a call posts to the checkpoint API and what it answers, against a
recording fake gateway (the gateway's side is in tests/test_checkpoint/)."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections import Counter
from typing import Any

import pytest
import stepline
import stepline.checkpoint
from stepline import signing

from .conftest import FALLBACK_KEY, SIGNING_KEY, FakeGateway, call_body, sha1

ran: Counter[str] = Counter()

EVERY_STEP = stepline.Checkpoint.every_step()
# Longer than the default flush policy's threshold (max_at_risk, 100 ms).
SLOW_S = 0.15


def step(name: str, value: Any = None) -> Any:
    ran[name] += 1
    return value if value is not None else name


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="fn", trigger="test/go")
    async def fn(ctx: stepline.Context) -> list[Any]:
        return [await ctx.step.run(name, step, name) for name in ("a", "b", "c")]

    @client.function(
        id="napper", trigger="test/go", checkpoint=stepline.Checkpoint(buffered_steps=5, max_at_risk=None)
    )
    async def napper(ctx: stepline.Context) -> str:
        await ctx.step.run("a", step, "a")
        await ctx.step.sleep("nap", datetime.timedelta(hours=1))
        return "rested"

    @client.function(
        id="buffered", trigger="test/go", checkpoint=stepline.Checkpoint(buffered_steps=5, max_at_risk=None)
    )
    async def buffered(ctx: stepline.Context) -> list[Any]:
        return [await ctx.step.run(name, step, name) for name in ("a", "b")]

    @client.function(
        id="breaks", trigger="test/go", checkpoint=stepline.Checkpoint(buffered_steps=5, max_at_risk=None)
    )
    async def breaks(ctx: stepline.Context) -> None:
        await ctx.step.run("a", step, "a")
        raise RuntimeError("broken after a")

    @client.function(
        id="interval",
        trigger="test/go",
        checkpoint=stepline.Checkpoint(buffered_steps=100, max_interval=0.01, max_at_risk=None),
    )
    async def interval(ctx: stepline.Context) -> str:
        async def slow() -> str:
            await asyncio.sleep(0.05)
            return step("b")

        await ctx.step.run("a", step, "a")
        await ctx.step.run("b", slow)
        return "done"

    @client.function(id="slow-b", trigger="test/go")
    async def slow_b(ctx: stepline.Context) -> list[Any]:
        async def slow() -> str:
            await asyncio.sleep(SLOW_S)
            return step("b")

        a = await ctx.step.run("a", step, "a")
        b = await ctx.step.run("b", slow)
        return [a, b, await ctx.step.run("c", step, "c")]

    @client.function(
        id="pairs", trigger="test/go", checkpoint=stepline.Checkpoint(buffered_steps=2, max_at_risk=None)
    )
    async def pairs(ctx: stepline.Context) -> list[Any]:
        return [await ctx.step.run(name, step, name) for name in ("a", "b", "c", "d", "e")]

    return [fn, napper, buffered, breaks, interval, slow_b, pairs]


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ran.clear()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_each_step_is_posted_as_it_ends_and_the_call_answers_with_the_output(
    serve: Any, gateway: FakeGateway, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if transport == "httpx":  # an SDK installed without aiohttp
        monkeypatch.setattr(stepline.checkpoint, "aiohttp", None)
    client = stepline.Client("app", gateway_url=gateway.url, dev=True, checkpoint=EVERY_STEP)
    served = await serve(functions(client), client)
    res = await served.call("app-fn", call_body(qi_id="7:lease"))
    assert (res.status_code, res.json()) == (200, ["a", "b", "c"])
    assert ran == {"a": 1, "b": 1, "c": 1}
    posts = [r for r in gateway.requests if r["path"] == "/v1/checkpoint/run-1/async"]
    assert len(posts) == 3
    assert "authorization" not in posts[0]["headers"]  # dev mode
    bodies = gateway.checkpoints()
    for body, name in zip(bodies, "abc", strict=True):
        assert {k: body[k] for k in ("run_id", "fn_id", "qi_id")} == {
            "run_id": "run-1",
            "fn_id": "app-fn",
            "qi_id": "7:lease",
        }
        [op] = body["steps"]
        assert {k: op[k] for k in ("id", "op", "name", "data")} == {
            "id": sha1(name),
            "op": "StepRun",
            "name": name,
            "data": name,
        }
        assert op["timing"]["b"] >= 0
    await client.aclose()


async def test_without_a_work_item_or_on_a_retry_a_call_answers_after_one_step(
    serve: Any, gateway: FakeGateway
) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    for body in (call_body(), call_body(qi_id="7:lease", attempt=1)):
        res = await served.call("app-fn", body)
        assert res.status_code == 206
        assert [op["op"] for op in res.json()] == ["StepRun"]
    assert gateway.checkpoints() == []
    await client.aclose()


async def test_an_async_operation_ends_the_call_with_the_buffered_steps_before_it(
    serve: Any, gateway: FakeGateway
) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    res = await served.call("app-napper", call_body(qi_id="7:lease"))
    assert res.status_code == 206
    assert [(op["op"], op["id"]) for op in res.json()] == [("StepRun", sha1("a")), ("Sleep", sha1("nap"))]
    assert gateway.checkpoints() == []
    await client.aclose()


async def test_steps_still_buffered_at_the_end_come_with_run_complete(
    serve: Any, gateway: FakeGateway
) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    res = await served.call("app-buffered", call_body(qi_id="7:lease"))
    assert res.status_code == 206
    assert [(op["op"], op.get("data")) for op in res.json()] == [
        ("StepRun", "a"),
        ("StepRun", "b"),
        ("RunComplete", ["a", "b"]),
    ]
    assert res.json()[-1]["id"] == sha1("complete")
    await client.aclose()


async def test_an_error_after_buffered_steps_posts_them_first(serve: Any, gateway: FakeGateway) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    res = await served.call("app-breaks", call_body(qi_id="7:lease"))
    assert res.status_code == 500
    assert res.json()["message"] == "broken after a"
    [posted] = gateway.checkpoints()
    assert [op["name"] for op in posted["steps"]] == ["a"]
    await client.aclose()


async def test_when_the_checkpoint_api_fails_the_steps_come_in_the_answer(
    serve: Any, gateway: FakeGateway
) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True, checkpoint=EVERY_STEP)
    served = await serve(functions(client), client)
    gateway.checkpoint_statuses = [503, 503, 503]
    res = await served.call("app-fn", call_body(qi_id="7:lease"))
    assert res.status_code == 206
    assert [(op["op"], op["data"]) for op in res.json()] == [("StepRun", "a")]
    # Tried three times, then given up; "b" did not run.
    assert len(gateway.checkpoints()) == 3
    assert ran == {"a": 1}
    # A 4xx is not tried again.
    gateway.requests.clear()
    gateway.checkpoint_statuses = [400]
    res = await served.call("app-fn", call_body(qi_id="7:lease"))
    assert [op["data"] for op in res.json()] == ["a"]
    assert len(gateway.checkpoints()) == 1
    await client.aclose()


async def test_a_post_of_the_interval_that_fails_while_the_call_ends_leaves_its_steps_in_the_answer(
    serve: Any, gateway: FakeGateway
) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    # The interval's post of "a" starts while "b" runs, and fails (three tries, with backoff) after "b" ended.
    gateway.checkpoint_statuses = [503, 503, 503]
    res = await served.call("app-interval", call_body(qi_id="7:lease"))
    assert res.status_code == 206
    assert [(op["op"], op.get("name")) for op in res.json()] == [
        ("StepRun", "a"),
        ("StepRun", "b"),
        ("RunComplete", None),
    ]
    assert [[op["name"] for op in body["steps"]] for body in gateway.checkpoints()] == [["a"]] * 3
    await client.aclose()


async def test_a_409_stops_the_call(serve: Any, gateway: FakeGateway) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True, checkpoint=EVERY_STEP)
    served = await serve(functions(client), client)
    gateway.checkpoint_statuses = [409]
    res = await served.call("app-fn", call_body(qi_id="7:lease"))
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "true"
    assert res.json()["name"] == "StaleCallError"
    assert ran == {"a": 1}
    await client.aclose()


async def test_checkpoints_carry_the_bearer_token_and_fall_back_to_the_old_key(
    serve: Any, gateway: FakeGateway
) -> None:
    client = stepline.Client(
        "app",
        gateway_url=gateway.url,
        signing_key=SIGNING_KEY,
        signing_key_fallback=FALLBACK_KEY,
        dev=False,
        checkpoint=EVERY_STEP,
    )
    served = await serve(functions(client), client)
    gateway.accepted_tokens = {signing.bearer_token(FALLBACK_KEY)}
    raw = json.dumps(call_body(qi_id="7:lease")).encode()
    headers = {
        "x-inngest-signature": signing.sign_request(raw, SIGNING_KEY),
        "content-type": "application/json",
    }
    res = await served.http.post(
        "/api/inngest", params={"fnId": "app-fn", "stepId": "step"}, content=raw, headers=headers
    )
    assert (res.status_code, res.json()) == (200, ["a", "b", "c"])
    tokens = [r["headers"]["authorization"] for r in gateway.requests]
    current, fallback = (f"Bearer {signing.bearer_token(k)}" for k in (SIGNING_KEY, FALLBACK_KEY))
    assert tokens == [current, fallback] * 3
    await client.aclose()


def posted(gateway: FakeGateway) -> list[list[str]]:
    """The steps of each checkpoint post, in order."""
    return [[op["name"] for op in body["steps"]] for body in gateway.checkpoints()]


async def test_the_default_policy_posts_nothing_for_quick_steps_they_come_with_the_result(
    serve: Any, gateway: FakeGateway
) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    res = await served.call("app-fn", call_body(qi_id="7:lease"))
    assert res.status_code == 206
    assert [(op["op"], op.get("name")) for op in res.json()] == [
        ("StepRun", "a"),
        ("StepRun", "b"),
        ("StepRun", "c"),
        ("RunComplete", None),
    ]
    assert res.json()[-1]["data"] == ["a", "b", "c"]
    assert gateway.checkpoints() == []
    await client.aclose()


async def test_the_default_policy_posts_once_the_buffered_run_time_passes_its_threshold(
    serve: Any, gateway: FakeGateway
) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    res = await served.call("app-slow-b", call_body(qi_id="7:lease"))
    # "a" and the slow "b" are posted together when "b" ends; "c" comes with the result.
    assert posted(gateway) == [["a", "b"]]
    assert [(op["op"], op.get("name")) for op in res.json()] == [("StepRun", "c"), ("RunComplete", None)]
    # The strictest policy, for the same function: one post per step.
    gateway.requests.clear()
    strict = stepline.Client("app", gateway_url=gateway.url, dev=True, checkpoint=EVERY_STEP)
    served = await serve(functions(strict), strict)
    res = await served.call("app-slow-b", call_body(qi_id="7:lease"))
    assert (res.status_code, res.json()) == (200, ["a", "b", "c"])
    assert posted(gateway) == [["a"], ["b"], ["c"]]
    await client.aclose()
    await strict.aclose()


async def test_the_default_policy_posts_before_a_step_known_to_be_long(
    serve: Any, gateway: FakeGateway
) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    await served.call("app-slow-b", call_body(qi_id="7:lease"))
    assert posted(gateway) == [["a", "b"]]
    # "b" took longer than the threshold last time: "a" is posted before "b" starts, "b" when it ends.
    gateway.requests.clear()
    res = await served.call("app-slow-b", call_body(qi_id="8:lease"))
    assert posted(gateway) == [["a"], ["b"]]
    assert [op["op"] for op in res.json()] == ["StepRun", "RunComplete"]
    assert ran == {"a": 2, "b": 2, "c": 2}
    await client.aclose()


async def test_the_threshold_and_the_count_are_settings(serve: Any, gateway: FakeGateway) -> None:
    client = stepline.Client("app", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    res = await served.call("app-pairs", call_body(qi_id="7:lease"))
    assert posted(gateway) == [["a", "b"], ["c", "d"]]
    assert [(op["op"], op.get("name")) for op in res.json()] == [("StepRun", "e"), ("RunComplete", None)]
    # A threshold above the slow step's run time: nothing is posted, all three come with the result.
    gateway.requests.clear()
    lax = stepline.Client(
        "app", gateway_url=gateway.url, dev=True, checkpoint=stepline.Checkpoint(max_at_risk=1)
    )
    served = await serve(functions(lax), lax)
    res = await served.call("app-slow-b", call_body(qi_id="7:lease"))
    assert posted(gateway) == []
    assert [op["op"] for op in res.json()] == ["StepRun", "StepRun", "StepRun", "RunComplete"]
    await client.aclose()
    await lax.aclose()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="buffered_steps"):
        stepline.Checkpoint(buffered_steps=0)
    with pytest.raises(ValueError, match="negative"):
        stepline.Checkpoint(max_interval=-1)
    with pytest.raises(ValueError, match="negative"):
        stepline.Checkpoint(max_at_risk=-1)
    assert stepline.Checkpoint(max_interval=3, max_runtime=None).config() == {
        "batch_steps": 0,
        "batch_interval": "3s",
        "max_runtime": "0s",
        "max_at_risk": "100ms",
    }
    assert stepline.Checkpoint.every_step().config() == {
        "batch_steps": 1,
        "batch_interval": "0s",
        "max_runtime": "10s",
        "max_at_risk": "0s",
    }
