"""``stepline.testing``: a function run to its end in a unit test, with no gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import stepline
import stepline.testing
from stepline.testing import TestingError, TestRun  # pytest must not take them for test classes

client = stepline.Client("shop", dev=True)
charged: list[int] = []


@client.function(id="checkout", trigger="order/created", retries=2)
async def checkout(ctx: stepline.Context) -> dict[str, Any]:
    async def charge() -> str:
        charged.append(ctx.event.data["amount"])
        if len(charged) == 1:
            raise ConnectionError("the card network timed out")
        return "ch-1"

    charge_id = await ctx.step.run("charge", charge)
    await ctx.step.sleep("cool-off", 3600)
    paid = await ctx.step.wait_for_event("paid", event="order/paid", timeout=600, match="data.order_id")
    label = await ctx.step.invoke(
        "label", function="shop-print-label", data={"id": ctx.event.data["order_id"]}
    )
    lookups = await asyncio.gather(ctx.step.run("a", lambda: 1), ctx.step.run("b", lambda: 2))
    return {"charge": charge_id, "paid": paid is not None, "label": label, "lookups": list(lookups)}


EVENT = {"name": "order/created", "data": {"order_id": "o-1", "amount": 120}}
PAID = {"name": "order/paid", "data": {"order_id": "o-1"}}


async def test_a_run_goes_to_its_end_with_steps_run_sleeps_ended_and_waits_given() -> None:
    charged.clear()
    result: TestRun = await stepline.testing.run(
        checkout, EVENT, waits={"paid": PAID}, invokes={"label": "label-7"}
    )
    assert result.status == "Completed", result.error
    assert result.output == {"charge": "ch-1", "paid": True, "label": "label-7", "lookups": [1, 2]}
    assert charged == [120, 120], "the failed attempt was retried"
    assert result.step("charge").attempts == 2
    assert [s.id for s in result.sleeps] == ["cool-off"]
    assert [s.id for s in result.steps] == ["charge", "cool-off", "paid", "label", "a", "b"]


async def test_mocked_steps_do_not_run_and_a_mocked_error_fails_the_step() -> None:
    charged.clear()
    result = await stepline.testing.run(
        checkout, EVENT, steps={"charge": "ch-mock"}, waits={"paid": None}, invokes={"label": "l"}
    )
    assert charged == []
    assert result.output["charge"] == "ch-mock"
    assert result.output["paid"] is False
    assert result.step("charge").mocked

    failed = await stepline.testing.run(checkout, EVENT, steps={"charge": RuntimeError("declined")})
    assert failed.status == "Failed"
    assert failed.error is not None
    assert (failed.error["name"], failed.error["message"]) == ("RuntimeError", "declined")


async def test_a_wait_the_test_did_not_answer_is_named() -> None:
    with pytest.raises(TestingError, match="step 'paid' waits for an event"):
        await stepline.testing.run(checkout, EVENT, steps={"charge": "c"})


@client.function(id="always-fails", trigger="x/y", retries=1)
async def always_fails(ctx: stepline.Context) -> None:
    raise KeyError("user_id")


def test_run_sync_retries_as_the_gateway_would_then_fails() -> None:
    result = stepline.testing.run_sync(always_fails, {"name": "x/y"})
    assert result.status == "Failed"
    assert result.error is not None
    assert (result.error["name"], result.error["message"]) == ("KeyError", "'user_id'")
    assert result.calls == 2


@client.function(id="plain", trigger="x/y")
def plain(ctx: stepline.SyncContext) -> int:
    return ctx.step.run("double", lambda n: n * 2, ctx.event.data["n"])


def test_plain_functions_run_too() -> None:
    assert stepline.testing.run_sync(plain, {"name": "x/y", "data": {"n": 21}}).output == 42
