"""The claim with flow control reads what it takes: with 10,000 calls waiting for a concurrency slot and
10,000 gated calls due, claim_work (custom and generic plans) is still index range scans of the queue's
partial indexes; the trigger's wake-up reads the index of waiting calls, and the API's question (why do these
runs wait) reads the calls of those runs only."""

from __future__ import annotations

import datetime

import asyncpg
import pytest
from stepline_store.pool import QUERIES

from tests.support import tables_with_rows, whole_reads

QUEUE = """
WITH e AS (
    INSERT INTO events (id, name, data, ts, received_at)
    SELECT 'plan-' || g, 'plans/go', '{}', 0, now() FROM generate_series(1, 20000) g RETURNING id
), r AS (
    INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at)
    SELECT stepline_uuid7(now()), id, 'plans-f', 'f', 'http://127.0.0.1:9', 3, 'Queued', now()
    FROM e RETURNING id
), keys AS (
    INSERT INTO flow_keys (key, label, in_flight, tat)
    SELECT 'fn/plans-f/k' || g, 'k' || g, 2, now() FROM generate_series(0, 49) g
)
INSERT INTO work (run_id, step_id, available_at, concurrency_keys, concurrency_limits, throttle_key,
                  throttle_interval, throttle_tolerance, waiting, waiting_key, queued_at)
SELECT id, 'step',
       CASE WHEN n % 2 = 0 THEN 'infinity' ELSE now() + (random() - 0.5) * interval '1 day' END,
       ARRAY['fn/plans-f/k' || (n % 50)], ARRAY[2],
       CASE WHEN n % 4 = 1 THEN 'fn/plans-f/k' || (n % 50) END, interval '1 second', interval '0 seconds',
       CASE WHEN n % 2 = 0 THEN 'concurrency' END, CASE WHEN n % 2 = 0 THEN 'fn/plans-f/k' || (n % 50) END,
       CASE WHEN n % 2 = 0 THEN now() - n * interval '1 second' END
FROM (SELECT id, row_number() OVER () AS n FROM r) AS numbered
"""

STATEMENTS = {
    "claim_work": (
        "'0 s', 16, 'me', '30 s', '{}'",
        (datetime.timedelta(0), 16, "me", datetime.timedelta(seconds=30), []),
    ),
    "runs_waiting": (
        "'{00000000-0000-0000-0000-000000000001}', '0 s'",
        (["00000000-0000-0000-0000-000000000001"], datetime.timedelta(0)),
    ),
}
# What the trigger of 0011 runs when a slot of a key frees: the first call waiting for it.
WAKE = """
SELECT id FROM work WHERE waiting = 'concurrency' AND waiting_key = 'fn/plans-f/k7' AND id <> 1
ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
"""


@pytest.mark.parametrize("name", sorted(STATEMENTS))
async def test_flow_statements_never_scan_the_queue(database_url: str, name: str) -> None:
    literals, args = STATEMENTS[name]
    query = QUERIES[name]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(QUEUE)
        await conn.execute("ANALYZE")
        custom = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {query}", *args))
        await conn.execute(f"PREPARE statement AS {query}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        generic = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE statement({literals})"))
        wake = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {WAKE}"))
        populated = await tables_with_rows(conn)
    finally:
        await conn.close()
    for plan in (custom, generic, wake):
        assert "Seq Scan on work" not in plan, plan
        # Runs are partitioned by day: the days holding rows are read through their indexes.
        assert not [table for table in whole_reads(plan, populated) if table.startswith("runs")], plan
    assert "work_waiting_for_slot" in wake, wake
    if name == "runs_waiting":
        # The calls of the runs asked about, by the (run_id, step_id) index.
        for plan in (custom, generic):
            assert "work_run_id_step_id_key" in plan, plan
    if name == "claim_work":
        for plan in (custom, generic):
            assert "Bitmap Heap Scan on work" not in plan, plan
            assert "Index Scan using work_due on work" in plan, plan
            assert "work_waiting_for_slot" in plan, plan
