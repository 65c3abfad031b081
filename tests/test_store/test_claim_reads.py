"""A claim reads the runs and the calls it claims and no others: its cost does not grow with the day's runs.

Run ids are looked up one at a time in the day they belong to, and the claimed calls by their ids. With joins,
on statistics taken early in the day, the planner read today's partition of runs (or every Queued run, by the
status index) and the whole queue at each claim: it counts a lookup by id as a probe of every day's
partition, not knowing that all but one are pruned when the statement runs, so a hash join looks cheaper. The
test analyzes a day of a few runs, fills it with finished ones, queues a few calls, and counts the rows each
plan of the claim (for the values, and the generic one a prepared statement keeps) reads from the partitions
of ``runs`` and from ``work``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from stepline_store.pool import QUERIES, create_pool

from benchmarks.history import plan_nodes

FINISHED, QUEUED, LIMIT = 3000, 40, 16
FILL = """
INSERT INTO events (id, name, data, ts, received_at)
SELECT 'day-' || n, 'day/go', '{{}}', 0, now() FROM generate_series({first}, {last}) AS n;
INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at, started_at,
                  ended_at)
SELECT stepline_uuid7(now()), id, 'day-fn', 'fn', 'http://127.0.0.1:9/api/inngest', 3,
       CASE WHEN substr(id, 5)::int <= {finished} THEN 'Completed' ELSE 'Queued' END, now(), now(), now()
FROM events WHERE substr(id, 5)::int BETWEEN {first} AND {last};
INSERT INTO work (run_id, step_id, available_at)
SELECT id, 'step', now() - interval '1 second' FROM runs WHERE status = 'Queued';
"""


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    async with pool.acquire() as connection:
        # Statistics taken early in the day, as a busy day outgrows them before the next ANALYZE.
        await connection.execute(FILL.format(first=1, last=50, finished=FINISHED))
        await connection.execute("ANALYZE")
        await connection.execute(FILL.format(first=51, last=FINISHED + QUEUED, finished=FINISHED))
        yield connection
    await pool.close()


def rows_read(plan: dict[str, object], table: str) -> float:
    """Rows the plan's scans of ``table`` (or of its partitions) handed on, over all their loops."""
    return sum(
        float(node["Actual Rows"]) * float(node["Actual Loops"])
        for node in plan_nodes(plan)
        if str(node.get("Relation Name", "")).startswith(table) and "Scan" in str(node["Node Type"])
    )


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_claim_reads_only_the_runs_it_claims(conn: asyncpg.Connection, mode: str) -> None:
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE claim AS {QUERIES['claim_work']}")
        # EXECUTE takes literals (ours): clock offset, limit, owner, lease, capped URLs.
        values = f"'0 s', {LIMIT}, 'claims', '30 s', '{{}}'"
        [result] = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim({values})")
    finally:
        await transaction.rollback()
    plan = result["Plan"]
    assert plan["Actual Rows"] == LIMIT
    # Each claimed call's run is read three times (to lock it, to mark it Running, to answer with it).
    assert rows_read(plan, "runs_p") <= 3 * LIMIT, rows_read(plan, "runs_p")
    # The queue: the due calls looked at (the limit), the claimed ones again to lease them, and their memos.
    assert rows_read(plan, "work") <= 4 * LIMIT, rows_read(plan, "work")
