"""Supervised tasks: they come back after any error, log once per failure streak, report their health in
``/readyz``, and give up (so that the process is restarted) only on errors that waiting does not cure."""

from __future__ import annotations

import asyncio
import logging
import random

import asyncpg
import pytest
import stepline
import stepline.asgi
from stepline_gateway.supervision import Health, RetryDelay, Supervisor

from tests.support import eventually, route, running_gateway, serve

FAST = RetryDelay(base_s=0.001, max_s=0.005)


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    delay = RetryDelay(base_s=0.1, max_s=2.0)
    rng = random.Random(3)
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.6), (6, 2.0), (60, 2.0)]:
        delays = [delay.after(failures, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 4, "jitter spreads the delays"


async def test_a_failing_task_comes_back_and_logs_once_per_streak(caplog: pytest.LogCaptureFixture) -> None:
    # What each run of the body does: fail at once, or report a unit of work and then fail or carry on.
    script = ["fail", "fail", "fail", "ok, then fail", "fail", "ok, then carry on"]
    carrying_on = asyncio.Event()

    async def body(health: Health) -> None:
        step = script.pop(0)
        if step.startswith("ok"):
            health.ok()
            if step.endswith("carry on"):
                carrying_on.set()
                await asyncio.Event().wait()
            raise OSError("the network went away")
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    supervisor = Supervisor(exit_after_s=0, on_unrecoverable=lambda _: None, delay=FAST)
    with caplog.at_level(logging.INFO, logger="stepline_gateway.supervision"):
        health = supervisor.start("worker", body)
        await asyncio.wait_for(carrying_on.wait(), 10)
        assert health.state == "running"
        assert supervisor.problems() == []
        await supervisor.stop()
    failed = [r.getMessage() for r in caplog.records if "worker failed" in r.getMessage()]
    back = [r.getMessage() for r in caplog.records if "worker is back" in r.getMessage()]
    assert len(failed) == 2, failed
    assert failed[0].startswith("worker failed: ConnectionDoesNotExistError: connection was closed")
    assert failed[1].startswith("worker failed: OSError: the network went away")
    assert len(back) == 2, back
    assert "after 3 failed attempt(s)" in back[0]
    assert "after 2 failed attempt(s)" in back[1]
    assert health.state == "stopped"


async def test_a_failing_task_is_a_readiness_problem_until_it_is_back() -> None:
    release = asyncio.Event()
    healthy = asyncio.Event()

    async def body(health: Health) -> None:
        if not release.is_set():
            raise RuntimeError("the routing table cannot be read")
        health.ok()
        healthy.set()
        await asyncio.Event().wait()

    supervisor = Supervisor(exit_after_s=0, on_unrecoverable=lambda _: None, delay=FAST)
    supervisor.start("routes", body)
    problems = await eventually(lambda: _value(supervisor.problems()), timeout=5)
    assert problems[0].startswith("routes is failing (")
    assert problems[0].endswith("attempt(s)): RuntimeError: the routing table cannot be read")
    release.set()
    await asyncio.wait_for(healthy.wait(), 5)
    assert supervisor.problems() == []
    await supervisor.stop()


async def test_a_task_that_returns_is_run_again() -> None:
    runs = 0

    async def body(health: Health) -> None:
        nonlocal runs
        runs += 1
        health.ok()

    supervisor = Supervisor(exit_after_s=0, on_unrecoverable=lambda _: None, delay=FAST)
    supervisor.start("short-lived", body)
    await eventually(lambda: _value(runs >= 3), timeout=5)
    await supervisor.stop()


async def test_wake_cuts_a_backoff_short() -> None:
    attempts = 0

    async def body(health: Health) -> None:
        nonlocal attempts
        attempts += 1
        raise OSError("refused")

    supervisor = Supervisor(
        exit_after_s=0, on_unrecoverable=lambda _: None, delay=RetryDelay(base_s=3600, max_s=3600)
    )
    supervisor.start("listener", body)
    await eventually(lambda: _value(attempts == 1), timeout=5)
    supervisor.wake()  # the database is back: no hour-long wait
    await eventually(lambda: _value(attempts == 2), timeout=5)
    await supervisor.stop()


async def test_only_errors_that_waiting_does_not_cure_give_up() -> None:
    reasons: list[str] = []
    transient_attempts = 0

    async def outage(health: Health) -> None:
        nonlocal transient_attempts
        transient_attempts += 1
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    async def bug(health: Health) -> None:
        raise KeyError("triggers")

    supervisor = Supervisor(exit_after_s=0.05, on_unrecoverable=reasons.append, delay=FAST)
    supervisor.start("cron", outage)
    await eventually(lambda: _value(transient_attempts >= 100), timeout=10)
    assert reasons == [], "an outage of the database never makes the gateway give up"
    supervisor.start("prune", bug)
    await eventually(lambda: _value(reasons), timeout=10)
    assert reasons == [
        "prune kept failing for 0.05 s with errors that are not database or network ones (last: KeyError: "
        "'triggers')"
    ]
    await supervisor.stop()


async def _value(value: object) -> object:
    return value


async def test_readyz_reports_a_failing_loop_and_recovers(database_url: str) -> None:
    client = stepline.Client("ready", dev=True, checkpoint=False)

    @client.function(id="one", trigger="ready/go")
    async def one(ctx: stepline.Context) -> str:
        return "done"

    async with (
        serve(stepline.asgi.serve_app(client, [one])) as app_url,
        running_gateway(database_url) as gw,
    ):
        await gw.publish(route("ready-one", f"{app_url}/api/inngest", {"event": "ready/go"}))
        assert (await gw.http.get("/readyz")).status_code == 200
        admin = await asyncpg.connect(database_url)
        try:
            # Not a database outage: the queue's table is gone, which no retry cures by itself.
            await admin.execute("ALTER TABLE work RENAME TO work_away")
            await admin.execute("SELECT pg_notify('stepline_work', '')")

            async def unready() -> list[str] | None:
                response = await gw.http.get("/readyz")
                body = response.json()
                return body["problems"] if response.status_code == 503 else None

            problems = await eventually(unready)
            assert any(p.startswith("dispatcher is failing") and "UndefinedTableError" in p for p in problems)
            await admin.execute("ALTER TABLE work_away RENAME TO work")
        finally:
            await admin.close()

        async def ready() -> bool:
            return (await gw.http.get("/readyz")).status_code == 200

        await eventually(ready)
        [event_id] = await gw.send({"name": "ready/go", "data": {}})
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed"
        body = (await gw.http.get("/readyz")).json()
        assert body["tasks"] == dict.fromkeys(
            ("listener", "dispatcher", "heartbeat", "routes", "cron", "history", "prune"), "running"
        )
        assert body["replica"].startswith("gateway-")
