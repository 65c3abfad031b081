"""The queue's hot statements read only what they take: index range scans of the partial indexes, primary
key lookups, never a scan of the queue, with the plan Postgres makes for the values (custom) and the one it
may cache for any value (generic)."""

from __future__ import annotations

import datetime

import asyncpg
import pytest
from stepline_store.pool import QUERIES

from tests.support import tables_with_rows, whole_reads

# A queue of 20,000 calls: due and future ones, half of them first calls of Queued runs, 1 % leased.
QUEUE = """
WITH e AS (
    INSERT INTO events (id, name, data, ts, received_at)
    SELECT 'plan-' || g, 'plans/go', '{}', 0, now() FROM generate_series(1, 20000) g RETURNING id
), r AS (
    INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at)
    SELECT stepline_uuid7(now()), id, 'plans-f', 'f', 'http://127.0.0.1:9', 3,
           CASE WHEN random() < 0.5 THEN 'Queued' ELSE 'Running' END, now()
    FROM e RETURNING id
)
INSERT INTO work (run_id, step_id, available_at, lease_owner, lease_token, lease_expires_at)
SELECT id, 'step', now() + (random() - 0.5) * interval '1 day',
       CASE WHEN n % 100 = 0 THEN 'other' END, CASE WHEN n % 100 = 0 THEN gen_random_uuid() END,
       CASE WHEN n % 100 = 0 THEN now() + interval '30 seconds' END
FROM (SELECT id, row_number() OVER () AS n FROM r) AS numbered
"""

# Each statement with literal values (for the generic plan of a prepared statement) and the same as arguments;
# a name after "/" runs the statement of the first part with other values.
STATEMENTS = {
    "claim_work": (
        "'0 s', 16, 'me', '30 s', '{}'",
        (datetime.timedelta(0), 16, "me", datetime.timedelta(seconds=30), []),
    ),
    # An endpoint at its share of the call slots: its rows are skipped, each by a primary key lookup.
    "claim_work/capped": (
        "'0 s', 16, 'me', '30 s', '{http://127.0.0.1:9}'",
        (datetime.timedelta(0), 16, "me", datetime.timedelta(seconds=30), ["http://127.0.0.1:9"]),
    ),
    "next_due": ("'0 s'", (datetime.timedelta(0),)),
    "next_due_except": ("'0 s', '{http://hung/api}'", (datetime.timedelta(0), ["http://hung/api"])),
    "extend_leases": (
        "'{1,2}', '{00000000-0000-0000-0000-000000000001,00000000-0000-0000-0000-000000000002}', '30 s'",
        (
            [1, 2],
            ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"],
            datetime.timedelta(seconds=30),
        ),
    ),
    "release_orphaned_leases": ("'me', '{1,2}'", ("me", [1, 2])),
}


@pytest.mark.parametrize("name", sorted(STATEMENTS))
async def test_queue_statements_never_scan_the_queue(database_url: str, name: str) -> None:
    literals, args = STATEMENTS[name]
    query = QUERIES[name.partition("/")[0]]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(QUEUE)
        await conn.execute("ANALYZE")
        custom = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {query}", *args))
        await conn.execute(f"PREPARE statement AS {query}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        generic = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE statement({literals})"))
        populated = await tables_with_rows(conn)
    finally:
        await conn.close()
    for plan in (custom, generic):
        assert "Seq Scan on work" not in plan, plan
        assert not [table for table in whole_reads(plan, populated) if table.startswith("runs")], plan
        assert "Bitmap Heap Scan on work" not in plan, plan
    if name.startswith("claim_work"):
        for plan in (custom, generic):
            assert "Index Scan using work_due on work" in plan, plan
            assert "Index Scan using work_leased on work" in plan, plan
