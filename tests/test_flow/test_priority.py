"""Priority: ``priority.run`` moves a run ahead of the runs of its function queued up to that many seconds
before it (seen here behind a concurrency limit of one); a negative priority moves it back."""

from __future__ import annotations

from stepline_gateway.clock import ManualClock

from tests.services import OverlapService
from tests.support import eventually, running_gateway
from tests.test_flow.support import all_ended, flow_route, holds


async def test_a_higher_priority_run_starts_before_those_queued_earlier(database_url: str) -> None:
    clock = ManualClock()
    service = OverlapService(hold_s=0.3)
    async with service.serving() as url, running_gateway(database_url, clock=clock) as gw:
        await gw.publish(
            flow_route(
                "prio-vip",
                url,
                "prio/go",
                concurrency=[{"limit": 1}],
                priority={"run": "has(event.data.vip) ? 300 : (has(event.data.late) ? -300 : 0)"},
            )
        )
        await gw.send({"name": "prio/go", "data": {"n": 0}})
        await eventually(holds(lambda: service.calls == 1))
        await gw.send({"name": "prio/go", "data": {"n": 1, "late": True}})
        await gw.send(*({"name": "prio/go", "data": {"n": n}} for n in (2, 3)))
        await gw.send({"name": "prio/go", "data": {"n": 4, "vip": True}})
        await all_ended(gw, "prio-vip", 4)
        # The late run's first call is 300 s away.
        assert service.started == [0, 4, 2, 3]
        clock.advance(301)
        await all_ended(gw, "prio-vip", 5)
        assert service.started == [0, 4, 2, 3, 1]
        assert service.most[""] == 1
