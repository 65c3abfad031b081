"""What Python teams expect: plain ``def`` functions, outputs that are not JSON, typed outputs and events."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import threading
import uuid
from typing import Any

import pydantic
import pytest
import stepline

from .conftest import FakeGateway, call_body, sha1

client = stepline.Client("app", dev=True)


class Order(pydantic.BaseModel):
    order_id: str
    amount: decimal.Decimal
    placed_at: datetime.datetime


@dataclasses.dataclass
class Receipt:
    number: uuid.UUID
    total: decimal.Decimal


ORDER = {"order_id": "o-1", "amount": "12.50", "placed_at": "2026-01-02T03:04:05Z"}
RECEIPT_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@client.function(id="plain", trigger="test/go")
def plain(ctx: stepline.SyncContext) -> dict[str, Any]:
    threads = {"function": threading.current_thread().name}

    def charge(amount: int) -> str:
        threads["step"] = threading.current_thread().name
        return f"ch-{amount}"

    charged = ctx.step.run("charge", charge, ctx.event.data["n"])
    ctx.step.sleep("settle", 5)
    return {"charged": charged, **threads}


async def test_a_plain_def_function_runs_in_a_thread_with_blocking_steps(serve: Any) -> None:
    served = await serve([plain])
    first = await served.call("app-plain", call_body())
    assert first.status_code == 206
    [op] = first.json()
    assert (op["op"], op["name"], op["data"]) == ("StepRun", "charge", "ch-1")
    second = await served.call("app-plain", call_body(steps={sha1("charge"): {"data": "ch-1"}}))
    [sleep] = second.json()
    assert (sleep["op"], sleep["opts"]) == ("Sleep", {"duration": "5s"})
    done = await served.call(
        "app-plain", call_body(steps={sha1("charge"): {"data": "ch-1"}, sha1("settle"): None})
    )
    assert done.status_code == 200
    answer = done.json()
    assert answer["charged"] == "ch-1"
    assert answer["function"].startswith("stepline-function")
    assert answer["function"] != threading.current_thread().name


@client.function(id="plain-fails", trigger="test/go")
def plain_fails(ctx: stepline.SyncContext) -> None:
    ctx.step.run("ok", lambda: 1)
    raise KeyError("user_id")


async def test_an_error_in_a_plain_function_is_reported_with_its_type(serve: Any) -> None:
    served = await serve([plain_fails])
    res = await served.call("app-plain-fails", call_body(steps={sha1("ok"): {"data": 1}}))
    assert res.status_code == 500
    assert (res.json()["name"], res.json()["message"]) == ("KeyError", "'user_id'")


@client.function(id="plain-checkpointed", trigger="test/go")
def plain_checkpointed(ctx: stepline.SyncContext) -> list[int]:
    return [ctx.step.run("a", lambda: 1), ctx.step.run("b", lambda: 2), ctx.step.run("c", lambda: 3)]


async def test_a_plain_function_checkpoints_its_steps_in_one_call(serve: Any, gateway: FakeGateway) -> None:
    every_step = stepline.Checkpoint.every_step()
    checkpointing = stepline.Client("app", gateway_url=gateway.url, dev=True, checkpoint=every_step)
    served = await serve([plain_checkpointed], checkpointing)
    res = await served.call("app-plain-checkpointed", call_body(qi_id="7:lease"))
    assert res.status_code == 200
    assert res.json() == [1, 2, 3]
    assert [[op["name"] for op in body["steps"]] for body in gateway.checkpoints()] == [["a"], ["b"], ["c"]]
    await checkpointing.aclose()


@client.function(id="rich", trigger="test/go")
async def rich(ctx: stepline.Context) -> dict[str, Any]:
    order = await ctx.step.run("order", lambda: Order.model_validate(ORDER), output_type=Order)
    receipt = await ctx.step.run(
        "receipt", lambda: Receipt(RECEIPT_ID, order.amount * 2), output_type=Receipt
    )
    assert isinstance(order.placed_at, datetime.datetime)
    assert isinstance(receipt.number, uuid.UUID)
    return {"order": order, "receipt": receipt, "at": order.placed_at, "total": receipt.total}


async def test_outputs_that_are_not_json_are_recorded_as_pydantic_serializes_them(serve: Any) -> None:
    served = await serve([rich])
    first = await served.call("app-rich", call_body())
    [op] = first.json()
    assert op["data"] == {"order_id": "o-1", "amount": "12.50", "placed_at": "2026-01-02T03:04:05Z"}
    memos = {sha1("order"): {"data": op["data"]}}
    second = await served.call("app-rich", call_body(steps=memos))
    [op] = second.json()
    assert op["data"] == {"number": str(RECEIPT_ID), "total": "25.00"}


async def test_output_type_gives_the_typed_value_back_on_replay(serve: Any) -> None:
    served = await serve([rich])
    memos = {
        sha1("order"): {"data": ORDER},
        sha1("receipt"): {"data": {"number": str(RECEIPT_ID), "total": "25.00"}},
    }
    done = await served.call("app-rich", call_body(steps=memos))
    assert done.status_code == 200, done.text
    assert done.json() == {
        "order": ORDER,
        "receipt": {"number": str(RECEIPT_ID), "total": "25.00"},
        "at": "2026-01-02T03:04:05Z",
        "total": "25.00",
    }


async def test_a_recorded_output_that_no_longer_fits_its_type_fails_the_run(serve: Any) -> None:
    served = await serve([rich])
    res = await served.call("app-rich", call_body(steps={sha1("order"): {"data": {"order_id": 3}}}))
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "true"
    assert "recorded output does not fit" in res.json()["message"]


@client.function(id="typed", trigger=stepline.TriggerEvent("order/created", data=Order))
async def typed(ctx: stepline.Context[Order]) -> str:
    order = ctx.event.data
    assert isinstance(order, Order)
    return f"{order.order_id}: {order.amount + 1}"


async def test_a_typed_trigger_validates_the_event_data_into_its_model(serve: Any) -> None:
    served = await serve([typed])
    event = {"name": "order/created", "data": ORDER, "id": "e-1", "ts": 1}
    res = await served.call("app-typed", call_body(event=event))
    assert (res.status_code, res.json()) == (200, "o-1: 13.50")


async def test_event_data_that_does_not_fit_the_model_fails_the_run_at_once(serve: Any) -> None:
    served = await serve([typed])
    event = {"name": "order/created", "data": {"order_id": "o-1"}, "id": "e-1", "ts": 1}
    res = await served.call("app-typed", call_body(event=event))
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "true"
    body = res.json()
    assert body["name"] == "EventDataError"
    assert "does not fit Order" in body["message"]
    assert "amount" in body["message"]


def test_the_trigger_of_a_typed_function_is_synced_as_a_plain_event_trigger() -> None:
    [config] = client.function_configs([typed], "http://svc/api/inngest")
    assert config["triggers"] == [{"event": "order/created"}]


async def test_send_accepts_a_model_as_the_data(gateway: FakeGateway) -> None:
    sender = stepline.Client("app", gateway_url=gateway.url, dev=True)
    order = Order.model_validate(ORDER)
    await sender.send(stepline.Event(name="order/created", data=order))
    await sender.send({"name": "order/created", "data": order})
    assert [r["body"] for r in gateway.requests] == [[{"name": "order/created", "data": ORDER}]] * 2
    await sender.aclose()


async def test_send_sync_sends_from_code_that_is_not_async(gateway: FakeGateway) -> None:
    sender = stepline.Client("app", gateway_url=gateway.url, dev=True)
    # As a Flask or Django view would, in a thread of its own.
    ids = await asyncio.to_thread(sender.send_sync, {"name": "a/b", "data": {"x": 1}})
    assert ids == ["id-0"]
    assert gateway.requests[-1]["body"] == [{"name": "a/b", "data": {"x": 1}}]
    await sender.aclose()


@pytest.mark.parametrize("value", [float("nan"), object()])
async def test_a_step_output_with_no_json_form_fails_the_step(serve: Any, value: Any) -> None:
    @client.function(id="bad-output", trigger="test/go")
    async def bad_output(ctx: stepline.Context) -> Any:
        return await ctx.step.run("bad", lambda: {"x": value})

    served = await serve([bad_output])
    res = await served.call("app-bad-output", call_body())
    [op] = res.json()
    assert op["op"] == "StepFailed"
    assert "not JSON-serializable" in op["error"]["message"]
