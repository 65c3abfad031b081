"""The official Inngest Python SDK runs on the gateway with only its URLs and keys changed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import fastapi
import inngest
import inngest.fast_api
import pytest

from tests.support import RunningGateway, running_gateway, serve

SIGNING_KEY = "signkey-prod-" + "ab" * 32
EVENT_KEY = "compat-event-key"


def build_app(gateway_url: str, calls: dict[str, int]) -> tuple[fastapi.FastAPI, inngest.Inngest]:
    client = inngest.Inngest(
        app_id="compat",
        is_production=True,
        signing_key=SIGNING_KEY,
        event_key=EVENT_KEY,
        api_base_url=gateway_url,
        event_api_base_url=gateway_url,
    )

    def count(name: str) -> int:
        calls[name] = calls.get(name, 0) + 1
        return calls[name]

    @client.create_function(fn_id="sequential", trigger=inngest.TriggerEvent(event="compat/sequential"))
    async def sequential(ctx: inngest.Context) -> dict[str, Any]:
        async def first() -> int:
            count("first")
            return ctx.event.data["n"] + 1

        async def flaky() -> str:
            if count("flaky") == 1:
                raise RuntimeError("flaky fails once")
            return "ok"

        a = await ctx.step.run("first", first)
        b = await ctx.step.run("flaky", flaky)
        return {"a": a, "b": b}

    @client.create_function(fn_id="parallel", trigger=inngest.TriggerEvent(event="compat/parallel"))
    async def parallel(ctx: inngest.Context) -> list[int]:
        async def one() -> int:
            return 1

        async def two() -> int:
            return 2

        results = await ctx.group.parallel(
            (lambda: ctx.step.run("one", one), lambda: ctx.step.run("two", two))
        )
        return list(results)  # type: ignore[arg-type]

    @client.create_function(
        fn_id="hopeless", trigger=inngest.TriggerEvent(event="compat/hopeless"), retries=3
    )
    async def hopeless(ctx: inngest.Context) -> None:
        async def refuse() -> None:
            count("refuse")
            raise inngest.NonRetriableError("this order cannot be processed")

        await ctx.step.run("refuse", refuse)

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [sequential, parallel, hopeless])
    return app, client


@contextlib.asynccontextmanager
async def compat_setup(database_url: str) -> AsyncIterator[tuple[RunningGateway, dict[str, int]]]:
    calls: dict[str, int] = {}
    async with running_gateway(
        database_url, dev=False, signing_key=SIGNING_KEY, event_keys=[EVENT_KEY]
    ) as gw:
        app, _ = build_app(gw.url, calls)
        async with serve(app) as app_url:
            await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
            functions = (await gw.http.get("/v1/functions")).json()["data"]
            assert {f["id"] for f in functions} == {"compat-sequential", "compat-parallel", "compat-hopeless"}
            yield gw, calls


async def test_sequential_steps_with_a_retry(database_url: str) -> None:
    async with compat_setup(database_url) as (gw, calls):
        [event_id] = await gw.send({"name": "compat/sequential", "data": {"n": 41}}, key=EVENT_KEY)
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed", run
        assert run["output"] == {"a": 42, "b": "ok"}
        assert calls == {"first": 1, "flaky": 2}
        steps = {s["name"]: s for s in run["steps"]}
        assert steps["first"]["output"] == 42
        assert steps["flaky"]["attempts"] == 2


async def test_parallel_steps(database_url: str) -> None:
    async with compat_setup(database_url) as (gw, _):
        [event_id] = await gw.send({"name": "compat/parallel", "data": {}}, key=EVENT_KEY)
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed", run
        assert run["output"] == [1, 2]
        assert {s["name"] for s in run["steps"]} == {"one", "two"}


async def test_non_retriable_error_fails_the_run_at_once(database_url: str) -> None:
    async with compat_setup(database_url) as (gw, calls):
        [event_id] = await gw.send({"name": "compat/hopeless", "data": {}}, key=EVENT_KEY)
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Failed", run
        assert "cannot be processed" in run["error"]["message"]
        assert calls == {"refuse": 1}


async def test_events_need_a_known_key_in_production(database_url: str) -> None:
    async with compat_setup(database_url) as (gw, _):
        response = await gw.http.post("/e/wrong-key", json={"name": "compat/sequential", "data": {}})
        assert response.status_code == 401
        assert "event key" in response.json()["error"]


@pytest.mark.parametrize("token", ["", "Bearer nope"])
async def test_sync_needs_the_signing_key_token(database_url: str, token: str) -> None:
    async with compat_setup(database_url) as (gw, _):
        headers = {"authorization": token} if token else {}
        response = await gw.http.post("/fn/register", json={"appname": "x", "functions": []}, headers=headers)
        assert response.status_code == 401
