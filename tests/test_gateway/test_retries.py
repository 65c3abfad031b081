"""Per-step retries follow exponential backoff with jitter on the gateway's clock, and honour retry-after."""

from __future__ import annotations

import asyncio
import datetime
import random
from typing import Any

import asyncpg
import stepline
import stepline.asgi
from stepline_gateway.backoff import Backoff
from stepline_gateway.clock import ManualClock

from tests.support import eventually, route, running_gateway, serve


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base_s=10, max_s=100)
    rng = random.Random(7)
    for attempt, ceiling in [(0, 10), (1, 20), (2, 40), (3, 80), (4, 100), (30, 100)]:
        delays = [backoff.delay(attempt, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 4, "jitter spreads the delays"


async def due_in(database_url: str, clock: ManualClock) -> float | None:
    """Seconds until the call released for a retry falls due (None while there is none): the clock runs,
    so a first call not claimed yet (due now) must not be mistaken for it."""
    conn = await asyncpg.connect(database_url)
    try:
        due = await conn.fetchval("SELECT available_at FROM work WHERE lease_token IS NULL AND attempt > 0")
    finally:
        await conn.close()
    return None if due is None else (due - clock.now()).total_seconds()


async def test_a_failing_step_waits_out_its_backoff_on_the_clock(database_url: str) -> None:
    clock = ManualClock()
    attempts: list[int] = []
    client = stepline.Client("retry", dev=True)

    @client.function(id="flaky", trigger="retry/go", retries=3)
    async def flaky(ctx: stepline.Context) -> str:
        async def call() -> str:
            attempts.append(ctx.attempt)
            if len(attempts) <= 2:
                raise RuntimeError(f"failure {len(attempts)}")
            return "done"

        return await ctx.step.run("call", call)

    async with (
        serve(stepline.asgi.serve_app(client, [flaky])) as app_url,
        running_gateway(database_url, clock=clock, retry_base_s=10, retry_max_s=1000) as gw,
    ):
        await gw.publish(route("retry-flaky", f"{app_url}/api/inngest", {"event": "retry/go"}, retries=3))
        [event_id] = await gw.send({"name": "retry/go", "data": {}})

        first_wait = await eventually(lambda: due_in(database_url, clock))
        # The backoff (5 to 10 s) runs from the database's clock, which went on since: allow a second.
        assert 4 <= first_wait <= 10
        await asyncio.sleep(0.3)
        assert attempts == [0], "nothing is retried before its time"

        clock.advance(first_wait)
        second_wait = await eventually(lambda: _after(attempts, 2, database_url, clock))
        assert 9 <= second_wait <= 20

        clock.advance(second_wait)
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed"
        assert attempts == [0, 1, 2]
        [step] = run["steps"]
        assert step["attempts"] == 3


async def _after(attempts: list[int], count: int, database_url: str, clock: ManualClock) -> float | None:
    if len(attempts) < count:
        return None
    return await due_in(database_url, clock)


async def test_retry_after_is_honoured(database_url: str) -> None:
    clock = ManualClock()
    client = stepline.Client("later", dev=True)
    calls: list[Any] = []

    @client.function(id="busy", trigger="later/go")
    async def busy(ctx: stepline.Context) -> str:
        async def call() -> str:
            calls.append(ctx.attempt)
            if len(calls) == 1:
                raise stepline.RetryAfterError("rate limited", datetime.timedelta(minutes=10))
            return "ok"

        return await ctx.step.run("call", call)

    async with (
        serve(stepline.asgi.serve_app(client, [busy])) as app_url,
        running_gateway(database_url, clock=clock, retry_base_s=1) as gw,
    ):
        await gw.publish(route("later-busy", f"{app_url}/api/inngest", {"event": "later/go"}))
        [event_id] = await gw.send({"name": "later/go", "data": {}})
        wait = await eventually(lambda: due_in(database_url, clock))
        assert 590 <= wait <= 601  # ten minutes from the time the service raised it, not the 1 s backoff
        clock.advance(wait)
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed"
        assert calls == [0, 1]
