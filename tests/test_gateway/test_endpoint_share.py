"""One hung service cannot starve the others: calls to one endpoint hold at most their share of the slots.

A service that accepts connections and never answers is sent 200 runs; another function's 50 runs all
complete while every one of the hung calls is still pending, and the hung service never holds more calls
than its share. Its queued work waits without the dispatcher polling for it.
"""

from __future__ import annotations

import asyncio

import asyncpg
from stepline_gateway.dispatcher import endpoint_cap

from tests.services import HungService, RawService, raw
from tests.support import RunningGateway, eventually, route, running_gateway

CONCURRENCY = 16
SHARE = 0.5


async def statuses(gw: RunningGateway, function_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    cursor = None
    while True:
        params = {"function": function_id, "limit": "500", **({"cursor": cursor} if cursor else {})}
        page = (await gw.http.get("/v1/runs", params=params)).json()
        for run in page["data"]:
            counts[run["status"]] = counts.get(run["status"], 0) + 1
        cursor = page["next_cursor"]
        if cursor is None:
            return counts


async def commits(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return value
    finally:
        await conn.close()


async def test_a_hung_service_holds_its_share_while_another_function_completes(database_url: str) -> None:
    cap = endpoint_cap(CONCURRENCY, SHARE)
    hung = HungService()
    healthy = RawService({"shop-fast": lambda body: raw(200, b'{"ok": true}')})
    async with (
        hung.serving() as hung_url,
        healthy.serving() as healthy_url,
        running_gateway(
            database_url, concurrency=CONCURRENCY, endpoint_share=SHARE, call_timeout_s=600, lease_s=30
        ) as gw,
    ):
        await gw.publish(
            route("slow-hung", hung_url, {"event": "slow/go"}),
            route("shop-fast", healthy_url, {"event": "fast/go"}),
        )
        await gw.send(*({"name": "slow/go", "data": {"n": n}} for n in range(200)))
        await eventually(lambda: _pending(hung, cap))

        await gw.send(*({"name": "fast/go", "data": {"n": n}} for n in range(50)))

        async def fast_done() -> bool:
            return (await statuses(gw, "shop-fast")).get("Completed", 0) == 50

        await eventually(fast_done, timeout=60)
        assert healthy.calls["shop-fast"] == 50
        # Every hung call is still pending: the healthy runs did not wait for any of them.
        assert hung.pending == cap
        assert hung.received == cap
        assert hung.most_pending == cap
        slow = await statuses(gw, "slow-hung")
        assert slow == {"Running": cap, "Queued": 200 - cap}

        # The queued hung work is due, yet the dispatcher waits for a slot of its endpoint to free rather
        # than asking again and again: a few commits (lease heartbeats) in seconds, not thousands.
        before = await commits(database_url)
        await asyncio.sleep(3)
        assert await commits(database_url) - before < 100
        assert hung.received == cap


async def _pending(hung: HungService, count: int) -> bool:
    return hung.pending >= count
