"""Concurrency limits, enforced at claim time: the service never sees more calls at once than the limit,
per key; the rest wait in order and all complete; a waiting run says why; two replicas share the limit."""

from __future__ import annotations

import asyncio
import datetime

import asyncpg
import stepline
import stepline.asgi
from stepline_gateway.clock import ManualClock

from tests.services import OverlapService
from tests.support import eventually, running_gateway, serve
from tests.test_flow.support import all_ended, flow_route, holds, runs_of_function


async def test_a_limit_of_two_is_never_exceeded_and_every_run_completes_in_order(database_url: str) -> None:
    service = OverlapService(hold_s=0.2)
    async with service.serving() as url, running_gateway(database_url, concurrency=16) as gw:
        await gw.publish(flow_route("lim-two", url, "lim/go", concurrency=[{"limit": 2}]))
        await gw.send(*({"name": "lim/go", "data": {"n": n}} for n in range(12)))
        runs = await all_ended(gw, "lim-two", 12)
        assert {run["status"] for run in runs} == {"Completed"}
        assert service.most[""] == 2
        assert service.calls == 12
        # Waiting runs start in the order their events came: two calls let through together may reach the
        # service either way round, no run further out of its place.
        assert sorted(service.started) == list(range(12))
        assert all(abs(place - n) <= 1 for place, n in enumerate(service.started)), service.started


async def test_each_key_has_its_own_limit(database_url: str) -> None:
    service = OverlapService(hold_s=0.3, key="acct")
    async with service.serving() as url, running_gateway(database_url, concurrency=16) as gw:
        await gw.publish(
            flow_route("lim-keyed", url, "keyed/go", concurrency={"limit": 1, "key": "event.data.acct"})
        )
        await gw.send(*({"name": "keyed/go", "data": {"n": n, "acct": f"acct-{n % 3}"}} for n in range(9)))
        await all_ended(gw, "lim-keyed", 9)
        assert {service.most[f"acct-{k}"] for k in range(3)} == {1}
        # The three keys ran side by side.
        assert service.most[""] == 3


async def test_a_waiting_run_says_why(database_url: str) -> None:
    service = OverlapService(hold_s=1.5)
    async with service.serving() as url, running_gateway(database_url, concurrency=16) as gw:
        await gw.publish(
            flow_route("lim-shown", url, "shown/go", concurrency={"limit": 2, "key": "event.data.acct"})
        )
        await gw.send(*({"name": "shown/go", "data": {"n": n, "acct": "acct-7"}} for n in range(3)))

        async def one_waiting() -> list[dict[str, object]]:
            runs = await runs_of_function(gw, "lim-shown")
            return [run for run in runs if run["waiting"]]

        [waiting] = await eventually(one_waiting)
        assert waiting["status"] == "Queued"
        assert waiting["waiting"] == {
            "reason": "concurrency",
            "key": "acct-7",
            "running": 2,
            "limit": 2,
            "message": "concurrency key `acct-7`: 2 of 2 running",
        }
        single = (await gw.http.get(f"/v1/runs/{waiting['id']}")).json()
        assert single["waiting"]["message"] == "concurrency key `acct-7`: 2 of 2 running"
        metrics = (await gw.http.get("/metrics")).text
        assert (
            'stepline_runs_waiting{function="lim-shown",namespace="default",reason="concurrency"} 1.0'
            in metrics
        )
        await all_ended(gw, "lim-shown", 3)


async def test_two_replicas_share_one_limit(database_url: str) -> None:
    service = OverlapService(hold_s=0.2)
    async with (
        service.serving() as url,
        running_gateway(database_url, concurrency=16) as first,
        running_gateway(database_url, concurrency=16) as second,
    ):
        await first.publish(flow_route("lim-shared", url, "shared/go", concurrency=[{"limit": 3}]))
        await second.gateway.reload_routes()
        await first.send(*({"name": "shared/go", "data": {"n": n}} for n in range(30)))
        await all_ended(first, "lim-shared", 30)
        assert service.most[""] == 3
        assert service.calls == 30
        calls = [_calls((await gw.http.get("/metrics")).text) for gw in (first, second)]
        assert all(calls), f"both replicas made calls: {calls}"


def _calls(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("stepline_calls_total{")
    )


async def test_env_and_account_scopes_share_a_key_across_functions(database_url: str) -> None:
    service = OverlapService(hold_s=0.3, key="acct")
    async with service.serving() as url, running_gateway(database_url, concurrency=16) as gw:
        shared = {"limit": 1, "key": "event.data.acct", "scope": "env"}
        await gw.publish(
            flow_route("scope-a", url, "scope/go", concurrency=[shared]),
            flow_route("scope-b", url, "scope/go", concurrency=[{**shared, "scope": "account"}]),
            flow_route("scope-c", url, "scope/go", concurrency=[shared]),
        )
        await gw.send(*({"name": "scope/go", "data": {"n": n, "acct": f"a{n % 2}"}} for n in range(4)))
        for function_id in ("scope-a", "scope-b", "scope-c"):
            await all_ended(gw, function_id, 4)
        # scope-a and scope-c share one slot per account (env); scope-b has its own (account): at most two
        # calls per account at once, never three.
        assert {service.most["a0"], service.most["a1"]} == {2}
        assert service.calls == 12


async def test_sleeping_runs_hold_no_slot(database_url: str) -> None:
    clock = ManualClock()
    async with running_gateway(database_url, clock=clock) as gw:
        client = stepline.Client("dozy", gateway_url=gw.url, dev=True)
        started: list[int] = []

        @client.function(id="nap", trigger="dozy/go", concurrency=1)
        async def nap(ctx: stepline.Context) -> int:
            await ctx.step.run("start", lambda: started.append(int(ctx.event.data["n"])))
            await ctx.step.sleep("nap", datetime.timedelta(hours=1))
            return int(ctx.event.data["n"])

        async with serve(stepline.asgi.serve_app(client, [nap])) as app_url:
            await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
            await gw.send(*({"name": "dozy/go", "data": {"n": n}} for n in range(3)))
            # All three start and sleep although one at a time may execute: a sleeping run holds no slot.
            await eventually(holds(lambda: sorted(started) == [0, 1, 2]))
            clock.advance(3601)
            runs = await all_ended(gw, "dozy-nap", 3)
            assert {run["status"] for run in runs} == {"Completed"}
            await client.aclose()


async def test_a_replayed_run_waits_for_a_slot_too(database_url: str) -> None:
    service = OverlapService(hold_s=1.0)
    async with service.serving() as url, running_gateway(database_url) as gw:
        await gw.publish(flow_route("lim-replay", url, "replay/go", concurrency=1))
        [first] = await gw.send({"name": "replay/go", "data": {"n": 0}})
        [done] = await gw.finished_runs(first)
        await gw.send({"name": "replay/go", "data": {"n": 1}})
        await eventually(holds(lambda: service.in_flight[""] == 1))
        replayed = (await gw.http.post(f"/v1/runs/{done['id']}/replay")).json()["id"]

        async def replay_waits() -> bool:
            run = (await gw.http.get(f"/v1/runs/{replayed}")).json()
            return run["status"] == "Queued" and (run["waiting"] or {}).get("reason") == "concurrency"

        await eventually(replay_waits)
        runs = await all_ended(gw, "lim-replay", 3)
        assert {run["status"] for run in runs} == {"Completed"}
        assert service.most[""] == 1


async def test_calls_waiting_for_a_slot_are_not_polled_for(database_url: str) -> None:
    service = OverlapService(hold_s=4.0)
    async with service.serving() as url, running_gateway(database_url, concurrency=16) as gw:
        await gw.publish(flow_route("lim-idle", url, "idle/go", concurrency=1))
        await gw.send(*({"name": "idle/go", "data": {"n": n}} for n in range(20)))

        async def parked() -> bool:
            runs = await runs_of_function(gw, "lim-idle")
            return sum(1 for run in runs if run["waiting"]) == 19

        await eventually(parked)
        # 19 calls wait while the dispatcher has free call slots: it waits for the slot to free (a trigger's
        # NOTIFY) rather than claiming again and again. A few commits (heartbeats, API reads), not thousands.
        before = await _commits(database_url)
        await asyncio.sleep(2)
        assert await _commits(database_url) - before < 60
        assert service.calls == 1
        await all_ended(gw, "lim-idle", 2, timeout=20)
        assert service.most[""] == 1


async def _commits(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return value
    finally:
        await conn.close()
