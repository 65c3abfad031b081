"""Several gateway replicas share one queue: every run completes once and each step runs once."""

from __future__ import annotations

import asyncio
from collections import Counter

import stepline
import stepline.asgi
from stepline_gateway.registry import MANIFEST_SOURCE

from tests.support import RunningGateway, eventually, route, running_gateway, serve

RUNS = 40


async def test_two_replicas_share_the_work_without_doing_it_twice(database_url: str) -> None:
    executed: Counter[str] = Counter()
    client = stepline.Client("shared", dev=True)

    @client.function(id="steps", trigger="shared/go")
    async def steps(ctx: stepline.Context) -> int:
        async def step(name: str) -> str:
            executed[f"{ctx.event.data['n']}:{name}"] += 1
            await asyncio.sleep(0.02)  # long enough for the other replica to claim work meanwhile
            return name

        for name in ("a", "b", "c"):
            await ctx.step.run(name, step, name)
        return int(ctx.event.data["n"])

    async with (
        serve(stepline.asgi.serve_app(client, [steps])) as app_url,
        running_gateway(database_url, concurrency=8) as first,
        running_gateway(database_url, concurrency=8) as second,
    ):
        await first.gateway.registry.publish(
            [route("shared-steps", f"{app_url}/api/inngest", {"event": "shared/go"})],
            replace_source=MANIFEST_SOURCE,
        )
        await eventually(lambda: _routed(first))
        await eventually(lambda: _routed(second))
        await first.send(*({"name": "shared/go", "data": {"n": n}} for n in range(RUNS)))

        async def all_completed() -> bool:
            runs = (await first.http.get("/v1/runs", params={"status": "Completed", "limit": 500})).json()
            return len(runs["data"]) == RUNS

        await eventually(all_completed, timeout=30)
        assert set(executed.values()) == {1}
        assert len(executed) == RUNS * 3
        calls = [_calls(gw.gateway.metrics.render()) for gw in (first, second)]
        assert all(count > 0 for count in calls), f"both replicas made calls: {calls}"


async def _routed(gw: RunningGateway) -> bool:
    """The other replica learns of the new route through NOTIFY, without a restart."""
    return "shared-steps" in gw.gateway.routes.functions


def _calls(metrics: bytes) -> float:
    total = 0.0
    for line in metrics.decode().splitlines():
        if line.startswith("stepline_calls_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
