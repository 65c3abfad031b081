"""The benchmark's raw floor runs the gateway's own named queries with the arguments the gateway gives
them: a small run of both modes completes every workflow, so a change to those queries' parameters that the
floor does not follow shows here rather than in a benchmark run."""

from __future__ import annotations

import asyncpg

from benchmarks.floor import measure_floor


async def test_the_floor_completes_every_workflow_in_both_modes(database_url: str) -> None:
    result = await measure_floor(
        database_url, workflows=40, concurrency=4, batch=10, batch_workers=2, pool_size=4
    )
    assert result.unbatched.workflows == result.batched.workflows == 40
    conn = await asyncpg.connect(database_url)
    try:
        # Two warm-ups of 50 and two runs of 40, each a Completed run with its three steps and no call left.
        assert await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'Completed'") == 180
        assert await conn.fetchval("SELECT count(*) FROM steps WHERE memo IS NOT NULL") == 3 * 180
        assert await conn.fetchval("SELECT count(*) FROM work") == 0
    finally:
        await conn.close()
