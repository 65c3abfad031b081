"""The checkpoint API and the answers of checkpointing SDKs, seen from the gateway.

The test plays the service by hand: each call the gateway makes waits until the test answers it, so that
the test can checkpoint steps while the call is open, exactly as a checkpointing SDK does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from stepline import signing
from stepline.protocol import hash_step_id
from stepline_gateway.registry import SDK_SOURCE
from stepline_gateway.routing import Function

from tests.support import RunningGateway, eventually, running_gateway, serve

SIGNING_KEY = "signkey-prod-" + "7a" * 32
EVENT_KEY = "manual-key"
TOKEN = signing.bearer_token(SIGNING_KEY)


@dataclass
class Call:
    """A call the gateway made, held open until ``answer``."""

    body: dict[str, Any]
    query: dict[str, str]
    reply: asyncio.Future[Response]

    @property
    def ctx(self) -> dict[str, Any]:
        ctx: dict[str, Any] = self.body["ctx"]
        return ctx

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        response = JSONResponse(body, status_code=status, headers=headers)
        # A production gateway takes only answers signed by its key, as the SDKs sign them.
        response.headers["x-inngest-signature"] = signing.sign(bytes(response.body), SIGNING_KEY)
        self.reply.set_result(response)


@dataclass
class Manual:
    gw: RunningGateway
    calls: asyncio.Queue[Call]

    async def next_call(self) -> Call:
        return await asyncio.wait_for(self.calls.get(), timeout=15)

    async def checkpoint(
        self, call: Call, steps: list[dict[str, Any]], *, token: str | None = TOKEN, **body: Any
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        payload = {
            "run_id": call.ctx["run_id"],
            "fn_id": call.ctx["fn_id"],
            "qi_id": call.ctx["qi_id"],
            "steps": steps,
            **body,
        }
        return await self.gw.http.post(
            f"/v1/checkpoint/{call.ctx['run_id']}/async", json=payload, headers=headers
        )


def ran(name: str, data: Any) -> dict[str, Any]:
    return {"op": "StepRun", "id": hash_step_id(name), "name": name, "displayName": name, "data": data}


@contextlib.asynccontextmanager
async def manual_service(database_url: str, **settings: Any) -> AsyncIterator[Manual]:
    calls: asyncio.Queue[Call] = asyncio.Queue()

    async def endpoint(request: Request) -> Response:
        reply: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        await calls.put(Call(await request.json(), dict(request.query_params), reply))
        return await reply

    app = Starlette(routes=[Route("/api", endpoint, methods=["POST"])])
    async with (
        running_gateway(
            database_url, dev=False, signing_key=SIGNING_KEY, event_keys=[EVENT_KEY], **settings
        ) as gw,
        serve(app) as url,
    ):
        function = Function(
            id="manual-fn",
            app_id="manual",
            name="fn",
            url=f"{url}/api",
            triggers=[{"event": "manual/go"}],
            retries=3,
            paused=False,
            source=SDK_SOURCE,
        )
        await gw.gateway.registry.publish([function], replace_app="manual", replace_source=SDK_SOURCE)
        await gw.gateway.reload_routes()
        yield Manual(gw, calls)


async def start(manual: Manual) -> tuple[str, Call]:
    [event_id] = await manual.gw.send({"name": "manual/go", "data": {}}, key=EVENT_KEY)
    return event_id, await manual.next_call()


async def test_a_call_names_its_work_item_and_steps_checkpointed_meanwhile_are_recorded(
    database_url: str,
) -> None:
    async with manual_service(database_url) as manual:
        event_id, call = await start(manual)
        assert call.ctx["fn_id"] == "manual-fn"
        assert call.ctx["qi_id"]
        res = await manual.checkpoint(call, [ran("a", 1)])
        assert res.status_code == 200, res.text
        assert res.json() == {"run_id": call.ctx["run_id"], "steps": 1, "recorded": 1}
        # The TypeScript SDK's form of the token (its key's prefix in front) is taken too.
        res = await manual.checkpoint(call, [ran("b", {"x": 2})], token=f"signkey-prod-{TOKEN}")
        assert res.status_code == 200, res.text
        run = await manual.gw.run(call.ctx["run_id"])
        assert run["status"] == "Running"
        assert [(s["name"], s["output"], s["checkpointed"]) for s in run["steps"]] == [
            ("a", 1, True),
            ("b", {"x": 2}, True),
        ]
        call.answer(200, "done")
        [run] = await manual.gw.finished_runs(event_id)
        assert run["output"] == "done"


async def test_the_checkpoint_api_refuses_a_wrong_token(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        event_id, call = await start(manual)
        for token in (None, "not-the-token", signing.bearer_token("signkey-prod-" + "00" * 32)):
            res = await manual.checkpoint(call, [ran("a", 1)], token=token)
            assert res.status_code == 401, res.text
            assert "bearer token" in res.json()["error"]
        assert (await manual.gw.run(call.ctx["run_id"]))["steps"] == []
        call.answer(200, None)
        await manual.gw.finished_runs(event_id)


async def test_the_checkpoint_api_refuses_async_operations(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        event_id, call = await start(manual)
        sleep = {"op": "Sleep", "id": hash_step_id("nap"), "name": "2026-01-01T00:00:00Z"}
        planned = {"op": "StepPlanned", "id": hash_step_id("p"), "name": "p"}
        for ops in ([sleep], [ran("a", 1), planned]):
            res = await manual.checkpoint(call, ops)
            assert res.status_code == 400, res.text
            assert "async operations cannot be checkpointed" in res.json()["error"]
        # Nothing of a refused request is recorded, not even the step that ran beside the async one.
        assert (await manual.gw.run(call.ctx["run_id"]))["steps"] == []
        call.answer(200, None)
        await manual.gw.finished_runs(event_id)


async def test_a_step_checkpointed_twice_is_recorded_once(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        event_id, call = await start(manual)
        assert (await manual.checkpoint(call, [ran("a", "first")])).json()["recorded"] == 1
        again = await manual.checkpoint(call, [ran("a", "second"), ran("a", "third")])
        assert again.status_code == 200
        assert again.json()["recorded"] == 0
        # The call's answer reports it once more: still nothing new.
        call.answer(
            206, [ran("a", "fourth"), {"op": "RunComplete", "id": hash_step_id("complete"), "data": 1}]
        )
        [run] = await manual.gw.finished_runs(event_id)
        assert run["status"] == "Completed"
        assert [(s["name"], s["output"], s["attempts"]) for s in run["steps"]] == [("a", "first", 1)]


async def test_a_call_that_lost_its_work_item_is_told_to_stop(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        event_id, call = await start(manual)
        work_id, _, _ = call.ctx["qi_id"].partition(":")
        stale = f"{work_id}:00000000-0000-0000-0000-000000000000"
        res = await manual.checkpoint(call, [ran("a", 1)], qi_id=stale)
        assert res.status_code == 409, res.text
        res = await manual.checkpoint(call, [ran("a", 1)], qi_id="not a reference")
        assert res.status_code == 400
        # Cancelled: the run's work item is gone, so even the right qi_id is refused.
        assert (await manual.gw.http.post(f"/v1/runs/{call.ctx['run_id']}/cancel")).status_code == 200
        res = await manual.checkpoint(call, [ran("a", 1)])
        assert res.status_code == 409
        assert "no longer holds its work item" in res.json()["error"]
        call.answer(200, None)
        [run] = await manual.gw.finished_runs(event_id)
        assert run["status"] == "Cancelled"
        assert run["steps"] == []


async def test_a_checkpoint_restarts_the_attempt_count_of_its_call(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        event_id, first = await start(manual)
        first.answer(500, {"name": "Error", "message": "boom", "stack": None})
        second = await manual.next_call()
        assert second.ctx["attempt"] == 1
        assert (await manual.checkpoint(second, [ran("a", 1)])).status_code == 200
        second.answer(500, {"name": "Error", "message": "boom again", "stack": None})
        third = await manual.next_call()
        # Progress was made: this failure is the first of what follows "a", not the call's third attempt.
        assert third.ctx["attempt"] == 1
        assert third.body["steps"] == {hash_step_id("a"): {"data": 1}}
        assert third.ctx["stack"]["stack"] == [hash_step_id("a")]
        third.answer(200, "ok")
        [run] = await manual.gw.finished_runs(event_id)
        assert run["status"] == "Completed"


async def test_an_answer_with_several_steps_records_them_in_order_then_goes_on(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        event_id, first = await start(manual)
        assert (await manual.checkpoint(first, [ran("a", 1)])).status_code == 200
        # The checkpoint API failed for "b" and "c" (say): the SDK answers with them.
        first.answer(206, [ran("b", 2), ran("c", 3)])
        second = await manual.next_call()
        assert second.query == {"fnId": "manual-fn", "stepId": "step"}
        assert second.body["steps"] == {
            hash_step_id(n): {"data": v} for n, v in (("a", 1), ("b", 2), ("c", 3))
        }
        assert second.ctx["stack"]["stack"] == [hash_step_id(n) for n in ("a", "b", "c")]
        assert second.ctx["attempt"] == 0
        second.answer(
            206, [ran("d", 4), {"op": "StepError", "id": hash_step_id("e"), "name": "e", "error": {}}]
        )
        third = await manual.next_call()
        assert third.query["stepId"] == hash_step_id("e")
        assert third.ctx["attempt"] == 1
        third.answer(206, [ran("e", 5)])
        fourth = await manual.next_call()
        assert (await manual.checkpoint(fourth, [ran("f", 6)])).status_code == 200
        fourth.answer(206, [{"op": "DiscoveryRequest", "id": hash_step_id("discovery-request-1")}])
        fifth = await manual.next_call()
        assert fifth.query["stepId"] == "step"
        assert set(fifth.body["steps"]) == {hash_step_id(n) for n in "abcdef"}
        fifth.answer(
            206, [ran("g", 7), {"op": "RunComplete", "id": hash_step_id("complete"), "data": {"n": 7}}]
        )
        [run] = await manual.gw.finished_runs(event_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"n": 7}
    assert [(s["name"], s["output"], s["checkpointed"]) for s in run["steps"]] == [
        ("a", 1, True),
        ("b", 2, False),
        ("c", 3, False),
        ("d", 4, False),
        ("e", 5, False),
        ("f", 6, True),
        ("g", 7, False),
    ]


async def test_an_answer_that_ends_with_an_async_operation_records_the_steps_before_it(
    database_url: str,
) -> None:
    async with manual_service(database_url) as manual:
        event_id, call = await start(manual)
        wait = {
            "op": "WaitForEvent",
            "id": hash_step_id("approval"),
            "name": "approval",
            "opts": {"event": "manual/approved", "timeout": "1h"},
        }
        call.answer(206, [ran("a", 1), wait])

        async def waiting() -> bool:
            steps = {s["name"]: s["status"] for s in (await manual.gw.run(call.ctx["run_id"]))["steps"]}
            return steps == {"a": "Completed", "approval": "Waiting"}

        await eventually(waiting)
        await manual.gw.send({"name": "manual/approved", "data": {"ok": True}}, key=EVENT_KEY)
        resumed = await manual.next_call()
        assert resumed.body["steps"][hash_step_id("a")] == {"data": 1}
        assert resumed.body["steps"][hash_step_id("approval")]["data"] == {"ok": True}
        resumed.answer(200, "approved")
        [run] = await manual.gw.finished_runs(event_id)
        assert run["output"] == "approved"
