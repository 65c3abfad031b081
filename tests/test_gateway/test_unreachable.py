"""An app that cannot be reached for a while (restarting, in dev) does not burn its runs' attempts; a
function's error is logged and recorded with its type. Time moves on the gateway's manual clock."""

from __future__ import annotations

import logging

import asyncpg
import pytest
import stepline
import stepline.asgi
from stepline_gateway.clock import ManualClock

from tests.support import eventually, free_port, route, running_gateway, serve


async def work_row(database_url: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT attempt, available_at FROM work WHERE lease_token IS NULL")
    finally:
        await conn.close()


def app() -> stepline.asgi.ServeApp:
    client = stepline.Client("restart", dev=True)

    @client.function(id="greet", trigger="restart/go", retries=2)
    async def greet(ctx: stepline.Context) -> str:
        return await ctx.step.run("hello", lambda: "hello")

    return stepline.asgi.serve_app(client, [greet])


async def test_calls_to_an_unreachable_app_wait_for_it_without_spending_attempts(database_url: str) -> None:
    clock = ManualClock()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/inngest"
    settings = {"retry_base_s": 1, "retry_max_s": 30, "unreachable_patience_s": 300}
    async with running_gateway(database_url, clock=clock, **settings) as gw:
        await gw.publish(route("restart-greet", url, {"event": "restart/go"}, retries=2))
        [event_id] = await gw.send({"name": "restart/go", "data": {}})
        [queued] = await gw.runs_of(event_id)
        waited = 0.0
        # Ten tries over a minute: as many as three attempts would allow, three times over.
        for _ in range(10):
            row = await eventually(lambda: _due_later(database_url, clock))
            assert row["attempt"] == 0, "a call that reached nothing spent no attempt"
            # The backoff of a first attempt is 0.5 to 1 s (retry_base_s 1); real time runs on under the test
            # clock's offset, so some of it has passed by the time the row is read.
            delay = (row["available_at"] - clock.now()).total_seconds()
            assert 0.0 < delay <= 1.0, "tried again on the backoff of its current attempt"
            clock.advance(delay + 5)
            waited += delay + 5
        run = await gw.run(queued["id"])
        assert run["status"] == "Running"
        assert "could not reach" in run["error"]["message"]
        assert waited > 50

        async with serve(app(), port=port):
            clock.advance(5)
            [done] = await gw.finished_runs(event_id)
    assert done["status"] == "Completed", done
    assert [(s["name"], s["attempts"], s["failed_attempts"]) for s in done["steps"]] == [("hello", 1, [])]


async def _due_later(database_url: str, clock: ManualClock) -> asyncpg.Record | None:
    """The work row once it is released and due after the clock's time: the try at this time is over."""
    row = await work_row(database_url)
    return row if row is not None and row["available_at"] > clock.now() else None


async def test_after_its_patience_an_unreachable_app_spends_attempts(database_url: str) -> None:
    clock = ManualClock()
    url = f"http://127.0.0.1:{free_port()}/api/inngest"
    settings = {"retry_base_s": 1, "retry_max_s": 30, "unreachable_patience_s": 20}
    async with running_gateway(database_url, clock=clock, **settings) as gw:
        await gw.publish(route("restart-greet", url, {"event": "restart/go"}, retries=1))
        [event_id] = await gw.send({"name": "restart/go", "data": {}})
        # The first try is over (the call released, due later): the patience runs from its failure.
        await eventually(lambda: _due_later(database_url, clock))
        clock.advance(30)  # past the patience: the next failure counts
        row = await eventually(lambda: _attempt_at_least(database_url, 1))
        clock.advance((row["available_at"] - clock.now()).total_seconds() + 1)
        [run] = await gw.finished_runs(event_id)
    assert run["status"] == "Failed"
    assert "could not reach" in run["error"]["message"]


async def _attempt_at_least(database_url: str, attempt: int) -> asyncpg.Record | None:
    row = await work_row(database_url)
    return row if row is not None and row["attempt"] >= attempt else None


async def test_without_patience_a_refused_connection_is_a_failed_attempt(database_url: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/inngest"
    async with running_gateway(database_url) as gw:
        await gw.publish(route("restart-greet", url, {"event": "restart/go"}, retries=1))
        [event_id] = await gw.send({"name": "restart/go", "data": {}})
        [run] = await gw.finished_runs(event_id)
    assert run["status"] == "Failed"


async def test_an_error_is_logged_and_recorded_with_its_type(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = stepline.Client("typed", dev=True)

    @client.function(id="lookup", trigger="typed/go", retries=1)
    async def lookup(ctx: stepline.Context) -> str:
        return str(ctx.event.data["user_id"])

    async with (
        serve(stepline.asgi.serve_app(client, [lookup])) as app_url,
        running_gateway(database_url) as gw,
    ):
        await gw.publish(route("typed-lookup", f"{app_url}/api/inngest", {"event": "typed/go"}, retries=1))
        with caplog.at_level(logging.INFO, logger="stepline_gateway"):
            [event_id] = await gw.send({"name": "typed/go", "data": {}})
            [run] = await gw.finished_runs(event_id)
    assert run["status"] == "Failed"
    assert (run["error"]["name"], run["error"]["message"]) == ("KeyError", "'user_id'")
    messages = [r.getMessage() for r in caplog.records]
    assert any("attempt 1 failed (KeyError: 'user_id')" in m for m in messages), messages
    assert any(m.endswith("failed: KeyError: 'user_id'") for m in messages), messages
