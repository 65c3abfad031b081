"""One lock order everywhere (a run's row before its work rows; claims never wait): cancels and claims of
the same runs, many at once across two replicas, never deadlock, and every run ends exactly once."""

from __future__ import annotations

import asyncio
import datetime
import random
from collections import Counter

import asyncpg
import stepline
import stepline.asgi
from stepline_store.pool import Store, create_pool

from tests.support import RunningGateway, eventually, route, running_gateway, serve

RUNS = 240


async def test_cancels_and_claims_together_never_deadlock(database_url: str) -> None:
    client = stepline.Client("locks", dev=True, checkpoint=False)

    @client.function(id="work", trigger="locks/go")
    async def work(ctx: stepline.Context) -> str:
        async def step() -> str:
            await asyncio.sleep(random.uniform(0, 0.003))
            return "done"

        return await ctx.step.run("only", step)

    async with (
        serve(stepline.asgi.serve_app(client, [work])) as app_url,
        running_gateway(database_url, concurrency=32) as first,
        running_gateway(database_url, concurrency=32) as second,
    ):
        await first.publish(route("locks-work", f"{app_url}/api/inngest", {"event": "locks/go"}))
        await eventually(lambda: _routed(second))
        answers: Counter[int] = Counter()
        cancelled: set[str] = set()
        refused: set[str] = set()

        async def cancel(gw: RunningGateway, run_id: str) -> None:
            response = await gw.http.post(f"/v1/runs/{run_id}/cancel")
            answers[response.status_code] += 1
            (cancelled if response.status_code == 200 else refused).add(run_id)

        for batch in range(RUNS // 40):
            ids = await first.send(*({"name": "locks/go", "data": {"n": batch * 40 + n}} for n in range(40)))
            runs = [run["id"] for event_id in ids for run in await first.runs_of(event_id)]
            # Half of the runs are cancelled while the replicas claim them, through both replicas.
            doomed = random.sample(runs, len(runs) // 2)
            await asyncio.gather(*(cancel((first, second)[n % 2], run_id) for n, run_id in enumerate(doomed)))

        assert set(answers) <= {200, 409}, answers

        async def all_ended() -> list[dict[str, str]] | None:
            response = await first.http.get("/v1/runs", params={"limit": 500})
            rows: list[dict[str, str]] = response.json()["data"]
            ended = [r for r in rows if r["status"] in ("Completed", "Cancelled")]
            return rows if len(rows) == RUNS and len(ended) == RUNS else None

        rows = await eventually(all_ended, timeout=60)
        status = {row["id"]: row["status"] for row in rows}
        assert {status[run_id] for run_id in cancelled} <= {"Cancelled"}
        assert {status[run_id] for run_id in refused} <= {"Completed"}
        assert {run_id for run_id, s in status.items() if s == "Cancelled"} == cancelled

    conn = await asyncpg.connect(database_url)
    try:
        # Each cancelled run ended once: one inngest/function.cancelled event each.
        emitted = await conn.fetch(
            "SELECT data->>'run_id' AS run_id, count(*) FROM events"
            " WHERE name = 'inngest/function.cancelled' GROUP BY 1"
        )
        assert {row["run_id"] for row in emitted} == cancelled
        assert {row["count"] for row in emitted} <= {1}
        deadlocks = await conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert deadlocks == 0


async def _routed(gw: RunningGateway) -> bool:
    return "locks-work" in gw.gateway.routes.functions


async def test_claim_and_cancel_statements_on_the_same_runs_never_deadlock(database_url: str) -> None:
    """The statements themselves, as fast as they go: claims of first calls and cancels of the same Queued
    runs, in batches, on many connections at once."""
    store = Store(await create_pool(database_url, min_size=16, max_size=16))
    try:
        run_ids = await store.pool.fetchval(QUEUED_RUNS, 2000)
        deadlocks = 0
        lease = datetime.timedelta(minutes=5)
        offset = datetime.timedelta(0)

        async def claimer(n: int) -> None:
            nonlocal deadlocks
            while True:
                try:
                    rows = await store.fetch(
                        "claim_work", offset, random.randint(1, 8), f"claimer-{n}", lease, []
                    )
                except asyncpg.DeadlockDetectedError:
                    deadlocks += 1
                    continue
                if not rows:
                    return

        async def canceller() -> None:
            nonlocal deadlocks
            for _ in range(40):
                doomed = sorted(random.sample(run_ids, 25))
                try:
                    await store.fetch("cancel_runs", doomed, offset)
                except asyncpg.DeadlockDetectedError:
                    deadlocks += 1

        await asyncio.gather(*(claimer(n) for n in range(8)), *(canceller() for _ in range(8)))
        assert deadlocks == 0
        left = await store.pool.fetchval("SELECT count(*) FROM work WHERE lease_token IS NULL")
        assert left == 0, "every call was claimed or cancelled"
    finally:
        await store.close()


# Queued runs with their first call due, as ingest makes them: $1 how many; answers their ids.
QUEUED_RUNS = """
WITH e AS (
    INSERT INTO events (id, name, data, ts, received_at)
    SELECT 'lock-' || g, 'locks/go', '{}', 0, now() FROM generate_series(1, $1) g RETURNING id
), r AS (
    INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at)
    SELECT stepline_uuid7(now()), e.id, 'locks-work', 'work', 'http://127.0.0.1:9', 3, 'Queued', now() FROM e
    RETURNING id
), w AS (
    INSERT INTO work (run_id, step_id, available_at) SELECT id, 'step', now() FROM r
)
SELECT array_agg(id) FROM r
"""
