"""What the API shows of a run and an event: the event's version, parallel steps in call order, a retried
step's last attempt apart from the backoff before it, and the event list without the system's events."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import stepline
import stepline.asgi
from stepline_gateway.clock import ManualClock

from tests.support import eventually, route, running_gateway, serve


def when(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value)


async def test_the_event_version_is_stored_and_passed_to_the_function(database_url: str) -> None:
    client = stepline.Client("ver", dev=True)

    @client.function(id="show", trigger="ver/go")
    async def show(ctx: stepline.Context) -> Any:
        return ctx.event.v

    async with (
        serve(stepline.asgi.serve_app(client, [show])) as app_url,
        running_gateway(database_url) as gw,
    ):
        await gw.publish(route("ver-show", f"{app_url}/api/inngest", {"event": "ver/go"}))
        [event_id] = await gw.send({"name": "ver/go", "data": {}, "v": "2024-01-01.1"})
        [run] = await gw.finished_runs(event_id)
        assert run["output"] == "2024-01-01.1"
        assert (await gw.http.get(f"/v1/events/{event_id}")).json()["v"] == "2024-01-01.1"
        refused = await gw.http.post("/e/k", json={"name": "ver/go", "v": 2})
        assert refused.status_code == 400
        assert "'v' (the event's version) must be a string" in refused.json()["error"]


async def test_parallel_steps_are_listed_in_call_order(database_url: str) -> None:
    client = stepline.Client("par", dev=True)
    names = [f"lookup-{n}" for n in range(6)]

    @client.function(id="fan", trigger="par/go")
    async def fan(ctx: stepline.Context) -> list[int]:
        async def lookup(n: int) -> int:
            # The later the call, the sooner it ends: completion order is the reverse of call order.
            await asyncio.sleep(0.02 * (len(names) - n))
            return n

        return list(await asyncio.gather(*(ctx.step.run(name, lookup, n) for n, name in enumerate(names))))

    async with (
        serve(stepline.asgi.serve_app(client, [fan])) as app_url,
        running_gateway(database_url) as gw,
    ):
        await gw.publish(route("par-fan", f"{app_url}/api/inngest", {"event": "par/go"}))
        [event_id] = await gw.send({"name": "par/go", "data": {}})
        [run] = await gw.finished_runs(event_id)
    assert run["output"] == list(range(6))
    assert [step["name"] for step in run["steps"]] == names


async def test_a_retried_steps_time_is_its_last_attempt_and_each_failed_attempt_has_its_own(
    database_url: str,
) -> None:
    clock = ManualClock()
    client = stepline.Client("slow", dev=True)
    tries: list[int] = []

    @client.function(id="flaky", trigger="slow/go", retries=2)
    async def flaky(ctx: stepline.Context) -> str:
        async def call() -> str:
            tries.append(ctx.attempt)
            if len(tries) == 1:
                raise ConnectionError("the API is away")
            return "ok"

        return await ctx.step.run("call", call)

    async with (
        serve(stepline.asgi.serve_app(client, [flaky])) as app_url,
        running_gateway(database_url, clock=clock, retry_base_s=600, retry_max_s=600) as gw,
    ):
        await gw.publish(route("slow-flaky", f"{app_url}/api/inngest", {"event": "slow/go"}, retries=2))
        [event_id] = await gw.send({"name": "slow/go", "data": {}})
        [queued] = await gw.runs_of(event_id)
        await eventually(lambda: _retrying(gw, queued["id"]))
        clock.advance(601)
        [run] = await gw.finished_runs(event_id)
    [step] = run["steps"]
    assert (step["status"], step["attempts"]) == ("Completed", 2)
    [failed] = step["failed_attempts"]
    # The backoff (five minutes or more on the clock) lies between the failed attempt and the last one.
    assert when(failed["started_at"]) <= when(failed["ended_at"])
    assert when(step["attempt_started_at"]) - when(failed["ended_at"]) >= datetime.timedelta(minutes=5)
    assert when(step["ended_at"]) - when(step["attempt_started_at"]) < datetime.timedelta(minutes=1)
    assert when(step["started_at"]) == when(failed["started_at"])


async def _retrying(gw: Any, run_id: str) -> bool:
    steps = (await gw.run(run_id))["steps"]
    return bool(steps) and steps[0]["status"] == "Retrying"


async def test_the_event_list_leaves_out_the_systems_events_when_asked(database_url: str) -> None:
    async with running_gateway(database_url) as gw:
        await gw.send(
            {"name": "shop/a", "data": {}},
            {"name": "inngest/function.failed", "data": {}},
            {"name": "shop/b", "data": {}},
        )
        every = (await gw.http.get("/v1/events")).json()["data"]
        mine = (await gw.http.get("/v1/events", params={"internal": "false"})).json()["data"]
        bad = await gw.http.get("/v1/events", params={"internal": "no"})
    assert sorted(e["name"] for e in every) == ["inngest/function.failed", "shop/a", "shop/b"]
    assert sorted(e["name"] for e in mine) == ["shop/a", "shop/b"]
    assert bad.status_code == 400
    assert "internal must be true or false" in bad.json()["error"]


async def test_the_ingest_answer_counts_the_runs_started(database_url: str) -> None:
    async with running_gateway(database_url) as gw:
        await gw.publish(route("count-a", "http://127.0.0.1:9/api/inngest", {"event": "count/go"}))
        await gw.publish(
            route("count-a", "http://127.0.0.1:9/api/inngest", {"event": "count/go"}),
            route("count-b", "http://127.0.0.1:9/api/inngest", {"event": "count/*"}),
        )
        heard = await gw.http.post("/e/k", json={"name": "count/go", "data": {}, "id": "e-1"})
        unheard = await gw.http.post("/e/k", json={"name": "nobody/listens", "data": {}})
        again = await gw.http.post("/e/k", json={"name": "count/go", "data": {}, "id": "e-1"})
    assert heard.json() == {"ids": ["e-1"], "status": 200, "runs_started": 2}
    assert unheard.json()["runs_started"] == 0
    assert again.json() == {"ids": ["e-1"], "status": 200, "runs_started": 0}
