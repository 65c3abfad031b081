"""Throttle (GCRA), enforced at claim time on the test clock: limit + burst - 1 runs start at once, then one
per period / limit; the rest wait for the start the throttle computes (a due time), on two replicas too."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from stepline_gateway.clock import ManualClock

from tests.services import OverlapService
from tests.support import eventually, running_gateway
from tests.test_flow.support import all_ended, flow_route, holds, runs_of_function


async def _settled(service: OverlapService, starts: int) -> None:
    """Exactly ``starts`` calls were made, and no more follow (a window's count, not a time)."""
    await eventually(holds(lambda: service.calls >= starts))
    await asyncio.sleep(0.4)
    assert service.calls == starts, service.started


@pytest.mark.parametrize("replicas", [1, 2])
async def test_starts_are_spread_one_per_interval(database_url: str, replicas: int) -> None:
    clock = ManualClock()
    service = OverlapService(hold_s=0.0)
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(service.serving())
        gateways = [
            await stack.enter_async_context(running_gateway(database_url, clock=clock, concurrency=8))
            for _ in range(replicas)
        ]
        first = gateways[0]
        # 2 per minute: one start every 30 s, and 2 at once (limit + burst - 1).
        await first.publish(
            flow_route("thr-spread", url, "thr/go", throttle={"limit": 2, "period": "1m", "burst": 1})
        )
        for other in gateways[1:]:
            await other.gateway.reload_routes()
        await first.send(*({"name": "thr/go", "data": {"n": n}} for n in range(6)))
        await _settled(service, 2)

        async def held_back() -> list[dict[str, object]]:
            return [run for run in await runs_of_function(first, "thr-spread") if run["waiting"]]

        waiting = await eventually(held_back)
        assert {run["waiting"]["reason"] for run in waiting} == {"throttled"}
        assert all(str(run["waiting"]["message"]).startswith("throttled until ") for run in waiting)
        metrics = (await first.http.get("/metrics")).text
        assert (
            'stepline_runs_waiting{function="thr-spread",namespace="default",reason="throttled"} 4.0'
            in metrics
        )
        for window in range(1, 5):
            clock.advance(30)
            await _settled(service, 2 + window)
        await all_ended(first, "thr-spread", 6)
        assert sorted(service.started) == list(range(6))
        if replicas == 1:
            # First come, first started (the first two together, so in either order). Two replicas that
            # claim at the same moment each rank only the calls they took, so there a run may be passed by
            # one the other replica took (docs/flow-control.md, "Throttle, enforced").
            assert sorted(service.started[:2]) == [0, 1]
            assert service.started[2:] == [2, 3, 4, 5]


async def test_each_key_has_its_own_throttle(database_url: str) -> None:
    clock = ManualClock()
    service = OverlapService(hold_s=0.0)
    async with service.serving() as url, running_gateway(database_url, clock=clock) as gw:
        await gw.publish(
            flow_route(
                "thr-keyed", url, "thrk/go", throttle={"limit": 1, "period": "1h", "key": "event.data.user"}
            )
        )
        await gw.send(*({"name": "thrk/go", "data": {"n": n, "user": n % 2}} for n in range(6)))
        # One start per user now; the next of each user an hour later.
        await _settled(service, 2)
        assert sorted(service.started) == [0, 1]
        clock.advance(3600)
        await _settled(service, 4)
        assert sorted(service.started[2:]) == [2, 3]
