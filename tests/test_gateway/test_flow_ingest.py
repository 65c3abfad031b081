"""Flow control at ingest with a Stepline SDK app: rateLimit, idempotency, singleton, debounce, batchEvents.

Each test declares the setting with ``client.function(...)``, syncs the app with a real gateway on loopback,
sends events and asserts what the service saw: how many runs, with which event or events, and what the API
says about the events that started nothing and the runs that wait. Time is the test clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import stepline
import stepline.asgi
from stepline_gateway.clock import ManualClock

from tests.support import RunningGateway, eventually, running_gateway, serve


async def synced(gw: RunningGateway, client: stepline.Client, functions: list[Any], app_url: str) -> None:
    """Sync the app with the gateway: the SDK's own sync payload (its functions and their flow control)."""
    payload = client.sync_payload(functions, f"{app_url}/api/inngest", framework="asgi")
    response = await gw.http.post("/fn/register", json=payload)
    assert response.status_code == 200, response.text


async def skipped(gw: RunningGateway, event_id: str) -> list[str]:
    response = await gw.http.get(f"/v1/events/{event_id}")
    assert response.status_code == 200, response.text
    return [entry["reason"] for entry in response.json()["skipped"]]


def recorder(seen: list[dict[str, Any]], app: str, trigger: str, **flow: Any) -> tuple[stepline.Client, Any]:
    client = stepline.Client(app, dev=True)

    @client.function(id="fn", trigger=trigger, **flow)
    async def fn(ctx: stepline.Context) -> int:
        seen.append({"event": ctx.event.data, "events": [e.data for e in ctx.events]})
        return len(ctx.events)

    return client, fn


async def test_rate_limit_skips_events_over_the_limit_per_key(database_url: str) -> None:
    clock = ManualClock()
    seen: list[dict[str, Any]] = []
    rate = stepline.RateLimit(limit=2, period="1m", key="event.data.user")
    client, fn = recorder(seen, "rl", "rl/go", rate_limit=rate)
    async with (
        serve(stepline.asgi.serve_app(client, [fn])) as app_url,
        running_gateway(database_url, clock=clock) as gw,
    ):
        await synced(gw, client, [fn], app_url)
        ids = await gw.send(*({"name": "rl/go", "data": {"user": "a", "n": n}} for n in range(5)))
        [other] = await gw.send({"name": "rl/go", "data": {"user": "b", "n": 9}})
        await eventually(lambda: _count(seen, 3))
        assert sorted(s["event"]["n"] for s in seen) == [0, 1, 9], "the first two of user a, and user b's"
        assert [await skipped(gw, i) for i in ids] == [[], []] + [["rate_limited"]] * 3
        assert await skipped(gw, other) == []
        event = (await gw.http.get(f"/v1/events/{ids[4]}")).json()
        assert event["runs"] == []
        assert "rate limited" in event["skipped"][0]["message"]

        # Half the period later one more slot is free (GCRA spreads the limit over the period).
        clock.advance(31)
        later = await gw.send(*({"name": "rl/go", "data": {"user": "a", "n": n}} for n in (10, 11)))
        await eventually(lambda: _count(seen, 4))
        assert [await skipped(gw, i) for i in later] == [[], ["rate_limited"]]
        metrics = (await gw.http.get("/metrics")).text
        assert (
            'stepline_events_skipped_total{function="rl-fn",namespace="default",reason="rate_limited"} 4.0'
            in metrics
        )


async def test_idempotency_starts_one_run_per_key_per_day(database_url: str) -> None:
    clock = ManualClock()
    seen: list[dict[str, Any]] = []
    client, fn = recorder(seen, "idem", "idem/go", idempotency="event.data.order")
    async with (
        serve(stepline.asgi.serve_app(client, [fn])) as app_url,
        running_gateway(database_url, clock=clock) as gw,
    ):
        await synced(gw, client, [fn], app_url)
        first = await gw.send({"name": "idem/go", "data": {"order": "o-1", "n": 0}})
        await eventually(lambda: _count(seen, 1))
        again = await gw.send(
            {"name": "idem/go", "data": {"order": "o-1", "n": 1}},
            {"name": "idem/go", "data": {"order": "o-2", "n": 2}},
            {"name": "idem/go", "data": {"order": "o-2", "n": 3}},
        )
        await eventually(lambda: _count(seen, 2))
        assert [await skipped(gw, i) for i in first + again] == [[], ["idempotency"], [], ["idempotency"]]
        clock.advance(23 * 3600)
        await gw.send({"name": "idem/go", "data": {"order": "o-1", "n": 4}})
        clock.advance(3601)
        await gw.send({"name": "idem/go", "data": {"order": "o-1", "n": 5}})
        await eventually(lambda: _count(seen, 3))
        await asyncio.sleep(0.3)
        assert sorted(s["event"]["n"] for s in seen) == [0, 2, 5]


async def test_singleton_skip_and_cancel(database_url: str) -> None:
    release = asyncio.Event()
    started: list[tuple[str, int]] = []
    client = stepline.Client("single", dev=True)

    @client.function(
        id="skip", trigger="single/skip", singleton=stepline.Singleton(key="event.data.k", mode="skip")
    )
    async def skip(ctx: stepline.Context) -> None:
        started.append(("skip", ctx.event.data["n"]))
        await release.wait()

    @client.function(
        id="cancel", trigger="single/cancel", singleton=stepline.Singleton(key="event.data.k", mode="cancel")
    )
    async def cancel(ctx: stepline.Context) -> None:
        started.append(("cancel", ctx.event.data["n"]))
        await ctx.step.sleep("rest", "1h")

    async with (
        serve(stepline.asgi.serve_app(client, [skip, cancel])) as app_url,
        running_gateway(database_url) as gw,
    ):
        await synced(gw, client, [skip, cancel], app_url)
        [a] = await gw.send({"name": "single/skip", "data": {"k": "x", "n": 1}})
        await eventually(lambda: _has(started, ("skip", 1)))
        [b, c] = await gw.send(
            {"name": "single/skip", "data": {"k": "x", "n": 2}},
            {"name": "single/skip", "data": {"k": "y", "n": 3}},
        )
        await eventually(lambda: _has(started, ("skip", 3)))
        assert await skipped(gw, b) == ["singleton"]
        assert await skipped(gw, c) == []
        release.set()
        await gw.finished_runs(a)
        [d] = await gw.send({"name": "single/skip", "data": {"k": "x", "n": 4}})
        await eventually(lambda: _has(started, ("skip", 4)))
        assert await skipped(gw, d) == []

        [first] = await gw.send({"name": "single/cancel", "data": {"k": "x", "n": 1}})
        await eventually(lambda: _has(started, ("cancel", 1)))
        [second] = await gw.send({"name": "single/cancel", "data": {"k": "x", "n": 2}})
        [old] = await gw.finished_runs(first)
        assert old["status"] == "Cancelled"
        await eventually(lambda: _has(started, ("cancel", 2)))
        [new] = await gw.runs_of(second)
        assert new["status"] in ("Queued", "Running")
        assert await skipped(gw, second) == []


async def test_debounce_runs_once_with_the_last_event(database_url: str) -> None:
    clock = ManualClock()
    seen: list[dict[str, Any]] = []
    debounce = stepline.Debounce(period="10s", key="event.data.user", timeout="25s")
    client, fn = recorder(seen, "deb", "deb/go", debounce=debounce)
    async with (
        serve(stepline.asgi.serve_app(client, [fn])) as app_url,
        running_gateway(database_url, clock=clock) as gw,
    ):
        await synced(gw, client, [fn], app_url)
        await gw.send({"name": "deb/go", "data": {"user": "a", "n": 1}})
        await gw.send(
            {"name": "deb/go", "data": {"user": "a", "n": 2}},
            {"name": "deb/go", "data": {"user": "b", "n": 3}},
        )
        clock.advance(6)
        [last] = await gw.send({"name": "deb/go", "data": {"user": "a", "n": 4}})
        [run] = await gw.runs_of(last)
        waiting = (await gw.run(run["id"]))["waiting"]
        assert waiting["reason"] == "debounced"
        assert waiting["message"].startswith("debounced until ")
        queue = (await gw.http.get("/v1/queue")).json()
        assert queue["waiting"].get("debounced") == 2
        metrics = (await gw.http.get("/metrics")).text
        assert (
            'stepline_runs_waiting{function="deb-fn",namespace="default",reason="debounced"} 2.0' in metrics
        )
        await asyncio.sleep(0.3)
        assert seen == [], "nothing runs before the period has passed without a new event"
        clock.advance(6)  # b's period is over, a's is not (its last event came 6 s ago)
        await eventually(lambda: _count(seen, 1))
        assert seen[0]["event"] == {"user": "b", "n": 3}
        clock.advance(5)
        await eventually(lambda: _count(seen, 2))
        assert seen[1]["event"] == {"user": "a", "n": 4}, "the run gets the last event"

        # The timeout caps the wait from the first event, however many events keep coming.
        for n in range(5, 9):
            await gw.send({"name": "deb/go", "data": {"user": "a", "n": n}})
            clock.advance(8)
        await eventually(lambda: _count(seen, 3))
        assert seen[2]["event"]["n"] == 8
        await asyncio.sleep(0.3)
        assert len(seen) == 3


async def test_batches_of_events(database_url: str) -> None:
    clock = ManualClock()
    seen: list[dict[str, Any]] = []
    batch = stepline.BatchEvents(max_size=3, timeout="10s", key="event.data.user")
    client, fn = recorder(seen, "bat", "bat/go", batch_events=batch)
    async with (
        serve(stepline.asgi.serve_app(client, [fn])) as app_url,
        running_gateway(database_url, clock=clock) as gw,
    ):
        await synced(gw, client, [fn], app_url)
        await gw.send(*({"name": "bat/go", "data": {"user": "a", "n": n}} for n in range(2)))
        await gw.send(*({"name": "bat/go", "data": {"user": "a", "n": n}} for n in range(2, 7)))
        [lone] = await gw.send({"name": "bat/go", "data": {"user": "b", "n": 100}})
        await eventually(lambda: _count(seen, 2))
        batches = sorted([e["n"] for e in s["events"]] for s in seen)
        assert batches == [[0, 1, 2], [3, 4, 5]]
        assert all(s["event"] == s["events"][0] for s in seen), "event is the batch's first"
        [run] = await gw.runs_of(lone)
        waiting = (await gw.run(run["id"]))["waiting"]
        assert waiting["reason"] == "batching"
        assert waiting["message"].startswith("batch 1 of 3")
        queue = (await gw.http.get("/v1/queue")).json()
        assert queue["waiting"].get("batching") == 2
        clock.advance(11)
        await eventually(lambda: _count(seen, 4))
        rest = sorted([e["n"] for e in s["events"]] for s in seen[2:])
        assert rest == [[6], [100]]


async def _count(seen: list[Any], n: int) -> bool:
    return len(seen) >= n


async def _has(seen: list[Any], item: Any) -> bool:
    return item in seen


async def test_a_replayed_batch_run_gets_the_same_events(database_url: str) -> None:
    seen: list[dict[str, Any]] = []
    batch = stepline.BatchEvents(max_size=2, timeout="10s")
    client, fn = recorder(seen, "rbat", "rbat/go", batch_events=batch)
    async with (
        serve(stepline.asgi.serve_app(client, [fn])) as app_url,
        running_gateway(database_url) as gw,
    ):
        await synced(gw, client, [fn], app_url)
        [first, _] = await gw.send(*({"name": "rbat/go", "data": {"n": n}} for n in range(2)))
        [run] = await gw.finished_runs(first)
        response = await gw.http.post(f"/v1/runs/{run['id']}/replay")
        assert response.status_code == 201, response.text
        await eventually(lambda: _count(seen, 2))
        assert [[e["n"] for e in s["events"]] for s in seen] == [[0, 1], [0, 1]]


async def test_runs_started_by_ingest_flow_control_obey_concurrency_too(database_url: str) -> None:
    running: list[int] = []
    overlap: list[int] = []
    client = stepline.Client("both", dev=True)

    @client.function(
        id="fn",
        trigger="both/go",
        idempotency="event.data.order",
        concurrency=stepline.Concurrency(limit=1),
    )
    async def fn(ctx: stepline.Context) -> None:
        running.append(1)
        overlap.append(len(running))
        await asyncio.sleep(0.2)
        running.pop()

    async with (
        serve(stepline.asgi.serve_app(client, [fn])) as app_url,
        running_gateway(database_url) as gw,
    ):
        await synced(gw, client, [fn], app_url)
        ids = await gw.send(*({"name": "both/go", "data": {"order": o}} for o in "aabc"))
        await eventually(lambda: _count(overlap, 3))
        assert await skipped(gw, ids[1]) == ["idempotency"]
        await asyncio.sleep(0.3)
        assert overlap == [1, 1, 1], "one at a time, and the repeated order started nothing"


async def test_a_key_too_long_to_index_is_kept_by_its_digest(database_url: str) -> None:
    seen: list[dict[str, Any]] = []
    rate = stepline.RateLimit(limit=1, period="1h", key="event.data.blob")
    client, fn = recorder(seen, "big", "big/go", rate_limit=rate, idempotency="event.data.blob")
    async with (
        serve(stepline.asgi.serve_app(client, [fn])) as app_url,
        running_gateway(database_url) as gw,
    ):
        await synced(gw, client, [fn], app_url)
        blob = "x" * 50_000
        ids = await gw.send(*({"name": "big/go", "data": {"blob": blob, "n": n}} for n in range(2)))
        [other] = await gw.send({"name": "big/go", "data": {"blob": blob + "y", "n": 2}})
        await eventually(lambda: _count(seen, 2))
        assert [await skipped(gw, i) for i in [*ids, other]] == [[], ["rate_limited"], []]
