"""Operations the gateway carries out: sleep, wait for an event, invoke; and send_event as a step."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
import stepline

from .conftest import FakeGateway, call_body, sha1

client = stepline.Client("app", dev=True)
UNTIL = datetime.datetime(2026, 11, 28, 18, 40, tzinfo=datetime.UTC)


async def noop() -> str:
    return "ran"


@client.function(id="sleeper", trigger="test/go")
async def sleeper(ctx: stepline.Context) -> str:
    await ctx.step.sleep("nap", datetime.timedelta(hours=1, minutes=30))
    return await ctx.step.run("after", noop)


@client.function(id="sleeps-until", trigger="test/go")
async def sleeps_until(ctx: stepline.Context) -> None:
    await ctx.step.sleep_until("wake", UNTIL.replace(tzinfo=None))


@client.function(id="waiter", trigger="test/go")
async def waiter(ctx: stepline.Context) -> dict[str, Any] | None:
    kind = ctx.event.data.get("kind")
    if kind == "match":
        got = await ctx.step.wait_for_event("pay", event="order/paid", timeout=600, match="data.order_id")
    elif kind == "both":
        got = await ctx.step.wait_for_event("pay", event="order/paid", timeout=600, if_exp="x", match="y")
    elif kind == "plain":
        got = await ctx.step.wait_for_event("pay", event="order/paid", timeout=datetime.timedelta(days=1))
    else:
        got = await ctx.step.wait_for_event(
            "pay", event="order/paid", timeout=10, if_exp="async.data.amount > 10"
        )
    return None if got is None else got.model_dump(exclude_none=True)


@client.function(id="child", trigger="test/child")
async def child(ctx: stepline.Context) -> int:
    return 42


@client.function(id="parent", trigger="test/go")
async def parent(ctx: stepline.Context) -> Any:
    if ctx.event.data.get("by_id"):
        return await ctx.step.invoke("call", function="other-child", data={"x": 1}, timeout=90)
    try:
        return await ctx.step.invoke("call", function=child)
    except stepline.StepError as err:
        return {"failed": err.name, "message": err.message}


@client.function(id="group", trigger="test/go")
async def group(ctx: stepline.Context) -> list[Any]:
    return list(await asyncio.gather(ctx.step.sleep("nap", 5), ctx.step.run("work", noop)))


@client.function(id="nested-sleep", trigger="test/go")
async def nested_sleep(ctx: stepline.Context) -> None:
    async def inner() -> None:
        await ctx.step.sleep("inside", 1)

    await ctx.step.run("outer", inner)


def sleep_op(name: str, duration: str, step_id: str = "nap") -> dict[str, Any]:
    return {
        "id": sha1(step_id),
        "op": "Sleep",
        "name": name,
        "displayName": step_id,
        "opts": {"duration": duration},
    }


async def test_sleep_reports_the_wake_up_time_and_duration_and_runs_nothing(serve: Any) -> None:
    served = await serve([sleeper])
    before = datetime.datetime.now(datetime.UTC)
    res = await served.call("app-sleeper", call_body())
    after = datetime.datetime.now(datetime.UTC)
    assert res.status_code == 206
    [op] = res.json()
    wake = datetime.datetime.strptime(op["name"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    nap = datetime.timedelta(hours=1, minutes=30)
    assert before + nap - datetime.timedelta(milliseconds=1) <= wake <= after + nap
    assert op == sleep_op(op["name"], "1h30m")
    assert op["name"].endswith("Z")
    assert len(op["name"]) == len("2026-11-28T18:40:00.000Z")


async def test_sleep_until_names_the_moment_a_naive_datetime_being_utc(serve: Any) -> None:
    served = await serve([sleeps_until])
    res = await served.call("app-sleeps-until", call_body())
    [op] = res.json()
    assert op["name"] == "2026-11-28T18:40:00.000Z"
    assert {k: v for k, v in op.items() if k != "opts"} == {
        "id": sha1("wake"),
        "op": "Sleep",
        "name": "2026-11-28T18:40:00.000Z",
        "displayName": "wake",
    }
    assert op["opts"]["duration"].endswith(("s", "m", "h"))


@pytest.mark.parametrize("memo", [None, {"data": None}])
async def test_a_finished_sleep_returns_none_and_the_function_goes_on(serve: Any, memo: Any) -> None:
    served = await serve([sleeper])
    res = await served.call("app-sleeper", call_body(steps={sha1("nap"): memo}))
    assert res.json() == [
        {"id": sha1("after"), "op": "StepRun", "name": "after", "displayName": "after", "data": "ran"}
    ]
    steps = {sha1("nap"): memo, sha1("after"): {"data": "ran"}}
    assert (await served.call("app-sleeper", call_body(steps=steps))).json() == "ran"


async def test_a_single_sleep_is_reported_even_when_immediate_execution_is_disabled(serve: Any) -> None:
    served = await serve([sleeps_until])
    res = await served.call("app-sleeps-until", call_body(disable_immediate_execution=True))
    assert [op["op"] for op in res.json()] == ["Sleep"]


def waiter_event(kind: str) -> dict[str, Any]:
    return {"name": "test/go", "data": {"kind": kind, "order_id": 7}}


@pytest.mark.parametrize(
    ("kind", "opts"),
    [
        ("if", {"event": "order/paid", "timeout": "10s", "if": "async.data.amount > 10"}),
        (
            "match",
            {"event": "order/paid", "timeout": "10m", "if": "event.data.order_id == async.data.order_id"},
        ),
        ("plain", {"event": "order/paid", "timeout": "24h"}),
    ],
)
async def test_wait_for_event_reports_the_event_timeout_and_condition(
    serve: Any, kind: str, opts: dict[str, Any]
) -> None:
    served = await serve([waiter])
    res = await served.call("app-waiter", call_body(event=waiter_event(kind)))
    assert res.status_code == 206
    assert res.json() == [
        {"id": sha1("pay"), "op": "WaitForEvent", "name": "order/paid", "displayName": "pay", "opts": opts}
    ]


async def test_wait_for_event_refuses_both_if_exp_and_match(serve: Any) -> None:
    served = await serve([waiter])
    res = await served.call("app-waiter", call_body(event=waiter_event("both")))
    assert res.status_code == 500
    assert res.json()["name"] == "ValueError"
    assert "either if_exp or match" in res.json()["message"]


PAID = {"id": "evt-9", "name": "order/paid", "data": {"order_id": 7}, "ts": 1_700_000_000_500, "v": "1"}


@pytest.mark.parametrize("memo", [PAID, {"data": PAID}])
async def test_a_fulfilled_wait_returns_the_event(serve: Any, memo: Any) -> None:
    served = await serve([waiter])
    res = await served.call("app-waiter", call_body(event=waiter_event("if"), steps={sha1("pay"): memo}))
    assert res.status_code == 200
    # The event's version travels with it.
    assert res.json() == {
        "id": "evt-9",
        "name": "order/paid",
        "data": {"order_id": 7},
        "ts": 1_700_000_000_500,
        "v": "1",
    }


@pytest.mark.parametrize("memo", [None, {"data": None}])
async def test_a_timed_out_wait_returns_none(serve: Any, memo: Any) -> None:
    served = await serve([waiter])
    res = await served.call("app-waiter", call_body(event=waiter_event("if"), steps={sha1("pay"): memo}))
    assert (res.status_code, res.json()) == (200, None)


async def test_invoke_names_the_child_by_full_id_with_its_payload(serve: Any) -> None:
    served = await serve([parent, child])
    res = await served.call("app-parent", call_body())
    assert res.json() == [
        {
            "id": sha1("call"),
            "op": "InvokeFunction",
            "name": "call",
            "displayName": "call",
            "opts": {"function_id": "app-child", "payload": {"data": {}}},
        }
    ]


async def test_invoke_by_full_id_with_data_and_timeout(serve: Any) -> None:
    served = await serve([parent])
    res = await served.call("app-parent", call_body(event={"name": "test/go", "data": {"by_id": True}}))
    [op] = res.json()
    assert op["opts"] == {"function_id": "other-child", "payload": {"data": {"x": 1}}, "timeout": "1m30s"}


async def test_invoke_returns_the_childs_output(serve: Any) -> None:
    served = await serve([parent])
    res = await served.call("app-parent", call_body(steps={sha1("call"): {"data": 42}}))
    assert (res.status_code, res.json()) == (200, 42)


async def test_a_failed_child_raises_step_error_in_the_parent(serve: Any) -> None:
    served = await serve([parent])
    memo = {"error": {"name": "ChildError", "message": "the child broke", "stack": None}}
    res = await served.call("app-parent", call_body(steps={sha1("call"): memo}))
    assert res.json() == {"failed": "ChildError", "message": "the child broke"}


async def test_a_sleep_in_a_parallel_group_is_planned_like_any_step(serve: Any) -> None:
    served = await serve([group])
    res = await served.call("app-group", call_body())
    assert res.json() == [
        {"id": sha1("nap"), "op": "StepPlanned", "name": "nap", "displayName": "nap"},
        {"id": sha1("work"), "op": "StepPlanned", "name": "work", "displayName": "work"},
    ]


async def test_a_targeted_sleep_is_reported_and_a_targeted_run_runs(serve: Any) -> None:
    served = await serve([group])
    res = await served.call("app-group", call_body(), step_id=sha1("nap"))
    [op] = res.json()
    assert op == sleep_op(op["name"], "5s")
    res = await served.call("app-group", call_body(steps={sha1("nap"): None}), step_id=sha1("work"))
    assert res.json() == [
        {"id": sha1("work"), "op": "StepRun", "name": "work", "displayName": "work", "data": "ran"}
    ]
    steps = {sha1("nap"): None, sha1("work"): {"data": "ran"}}
    assert (await served.call("app-group", call_body(steps=steps))).json() == [None, "ran"]


async def test_a_sleep_inside_a_step_fails_the_step(serve: Any) -> None:
    served = await serve([nested_sleep])
    [op] = (await served.call("app-nested-sleep", call_body())).json()
    assert (op["op"], op["error"]["name"]) == ("StepFailed", "NonRetriableError")
    assert "cannot be nested" in op["error"]["message"]


async def test_send_event_sends_once_and_replays_the_memoized_ids(serve: Any, gateway: FakeGateway) -> None:
    sender = stepline.Client("app", dev=True, gateway_url=gateway.url)

    @sender.function(id="fan-out", trigger="test/go")
    async def fan_out(ctx: stepline.Context) -> list[str]:
        events = [{"name": "order/item", "data": {"i": i}} for i in range(2)]
        return await ctx.step.send_event("fan", events)

    served = await serve([fan_out], sender)
    res = await served.call("app-fan-out", call_body())
    assert res.json() == [
        {"id": sha1("fan"), "op": "StepRun", "name": "fan", "displayName": "fan", "data": ["id-0", "id-1"]}
    ]
    assert [[e["data"] for e in r["body"]] for r in gateway.requests] == [[{"i": 0}, {"i": 1}]]
    res = await served.call("app-fan-out", call_body(steps={sha1("fan"): {"data": ["id-0", "id-1"]}}))
    assert (res.status_code, res.json()) == (200, ["id-0", "id-1"])
    assert len(gateway.requests) == 1
    await sender.aclose()
