"""The product brief's examples, end to end: gateway, demo service (our SDK) and Postgres, over real HTTP."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx

from examples.demo_service import create_app
from tests.support import RunningGateway, running_gateway, serve


@contextlib.asynccontextmanager
async def demo(database_url: str, **settings: Any) -> AsyncIterator[tuple[RunningGateway, httpx.AsyncClient]]:
    async with (
        running_gateway(database_url, **settings) as gw,
        serve(create_app(gateway_url=gw.url)) as app_url,
        httpx.AsyncClient(base_url=app_url) as app,
    ):
        await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
        yield gw, app


async def ledger(app: httpx.AsyncClient) -> Counter[str]:
    return Counter(entry["action"] for entry in (await app.get("/ledger")).json())


async def test_a_new_order_is_charged_once_and_fulfilled_after_a_retry(database_url: str) -> None:
    async with demo(database_url) as (gw, app):
        [event_id] = await gw.send({"name": "order/created", "data": {"order_id": "o-1", "amount": 120}})
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed", run
        assert run["output"] == {
            "charge": "ch_o-1",
            "fulfillment": "ful_o-1",
            "confirmation": "confirmation sent for ful_o-1",
        }
        assert await ledger(app) == {"charge": 1, "fulfillment-attempt": 2, "confirmation": 1}
        steps = {step["name"]: step for step in run["steps"]}
        assert list(steps) == ["charge-card", "create-fulfillment", "send-confirmation"]
        assert [steps[name]["attempts"] for name in steps] == [1, 2, 1]
        assert all(step["status"] == "Completed" for step in steps.values())
        assert steps["charge-card"]["output"] == "ch_o-1"


async def test_fan_out_gives_each_function_its_own_run_and_retries(database_url: str) -> None:
    async with demo(database_url) as (gw, app):
        [event_id] = await gw.send(
            {"name": "user/signed-up", "data": {"email": "ada@example.com", "crm_failures": 2}}
        )
        runs = {run["function"]["id"]: run for run in await gw.finished_runs(event_id, count=3)}
        assert set(runs) == {"shop-send-welcome-email", "shop-add-to-crm", "shop-start-trial"}
        assert {run["status"] for run in runs.values()} == {"Completed"}
        assert runs["shop-send-welcome-email"]["output"] == {
            "message": "welcome email sent to ada@example.com"
        }
        [crm_step] = runs["shop-add-to-crm"]["steps"]
        assert crm_step["attempts"] == 3
        assert [step["attempts"] for step in runs["shop-start-trial"]["steps"]] == [1]
        assert await ledger(app) == {"welcome-email": 1, "crm-contact": 1, "trial": 1}


async def test_parallel_steps_are_both_recorded(database_url: str) -> None:
    async with demo(database_url) as (gw, app):
        [event_id] = await gw.send({"name": "lead/created", "data": {"domain": "acme.test"}})
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed", run
        assert run["output"] == {"domain": "acme.test", "score": 60}
        outputs = {step["name"]: step["output"] for step in run["steps"]}
        assert outputs == {"lookup-company": 40, "lookup-social": 2}
        assert await ledger(app) == {"company-lookup": 1, "social-lookup": 1}


async def test_a_failed_run_shows_its_error_and_replays_after_the_fix(database_url: str) -> None:
    async with demo(database_url) as (gw, app):
        await app.post("/faults/warehouse")
        [event_id] = await gw.send({"name": "inventory/sync", "data": {"sku": "sku-9"}})
        [failed] = await gw.finished_runs(event_id)
        assert failed["status"] == "Failed"
        assert failed["error"]["name"] == "ConnectionError"
        assert "refused the connection" in failed["error"]["message"]
        assert failed["event"]["data"] == {"sku": "sku-9"}
        [step] = failed["steps"]
        assert (step["status"], step["attempts"]) == ("Failed", 2)
        assert "refused the connection" in step["error"]["message"]

        emitted = (await gw.http.get("/v1/events", params={"name": "inngest/function.failed"})).json()["data"]
        assert [e["data"]["run_id"] for e in emitted] == [failed["id"]]

        await app.delete("/faults/warehouse")
        response = await gw.http.post(f"/v1/runs/{failed['id']}/replay")
        assert response.status_code == 201, response.text
        replay_id = response.json()["id"]
        [_, replayed] = await gw.finished_runs(event_id, count=2)
        assert replayed["id"] == replay_id
        assert replayed["status"] == "Completed"
        assert replayed["replay_of"] == failed["id"]
        assert replayed["output"] == "sku-9: 7 in stock"
        assert (await gw.run(failed["id"]))["status"] == "Failed"


async def test_cancel_stops_a_run_and_cannot_cancel_twice(database_url: str) -> None:
    async with demo(database_url, concurrency=0) as (gw, _):
        [event_id] = await gw.send({"name": "order/created", "data": {"order_id": "o-2"}})
        [queued] = await gw.runs_of(event_id)
        response = await gw.http.post(f"/v1/runs/{queued['id']}/cancel")
        assert response.json() == {"id": queued["id"], "status": "Cancelled"}
        again = await gw.http.post(f"/v1/runs/{queued['id']}/cancel")
        assert again.status_code == 409
        assert "already ended" in again.json()["error"]
        replay_running = await gw.http.post(f"/v1/runs/{queued['id']}/replay")
        assert replay_running.status_code == 201


async def test_listing_runs_filters_and_pages(database_url: str) -> None:
    async with demo(database_url, concurrency=0) as (gw, _):
        for n in range(5):
            await gw.send({"name": "order/created", "data": {"order_id": f"o-{n}"}})
        await gw.send({"name": "lead/created", "data": {}})
        first = (
            await gw.http.get("/v1/runs", params={"function": "shop-process-new-order", "limit": 3})
        ).json()
        assert len(first["data"]) == 3
        second = (
            await gw.http.get(
                "/v1/runs",
                params={"function": "shop-process-new-order", "limit": 3, "cursor": first["next_cursor"]},
            )
        ).json()
        assert len(second["data"]) == 2
        seen = [r["id"] for r in first["data"] + second["data"]]
        assert len(set(seen)) == 5
        assert (await gw.http.get("/v1/runs", params={"status": "Sleeping"})).status_code == 400
        queued = (await gw.http.get("/v1/runs", params={"status": "Queued"})).json()["data"]
        assert len(queued) == 6


async def test_each_failed_attempt_of_a_step_is_kept_with_its_error(database_url: str) -> None:
    async with demo(database_url) as (gw, _):
        [event_id] = await gw.send({"name": "order/created", "data": {"order_id": "o-9"}})
        [run] = await gw.finished_runs(event_id)
        steps = {step["name"]: step for step in run["steps"]}
        [failed] = steps["create-fulfillment"]["failed_attempts"]
        assert failed["attempt"] == 1
        assert failed["error"]["name"] == "TimeoutError"
        assert failed["error"]["message"] == "the warehouse API timed out"
        assert "create_fulfillment" in failed["error"]["stack"]
        assert steps["charge-card"]["failed_attempts"] == []
