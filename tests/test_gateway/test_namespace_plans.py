"""The lists of one namespace read through their indexes on a large store: a namespace's runs newest first
through ``runs_namespace_created`` (no sort, no day read whole), its event log through an index;
with the plan Postgres makes for the values and the one it may cache for any value."""

from __future__ import annotations

import re

import asyncpg
import pytest
from stepline_store.pool import QUERIES

from tests.support import tables_with_rows, whole_reads

# 60,000 runs of today in three namespaces, and their events: a third sent into team-a, the rest to all.
HISTORY = """
WITH e AS (
    INSERT INTO events (id, name, data, ts, received_at, namespaces)
    SELECT 'ns-' || g, 'ns/go', '{}', 0, now() - g * interval '1 second',
           CASE g % 3 WHEN 0 THEN ARRAY['team-a'] END
    FROM generate_series(1, 60000) g
    RETURNING id, received_at
)
INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at)
SELECT stepline_uuid7(e.received_at), e.id,
       (ARRAY['team-a/shop-pay', 'team-b/shop-pay', 'shop-pay'])[1 + abs(hashtext(e.id)) % 3], 'pay',
       'http://127.0.0.1:9', 3, CASE WHEN random() < 0.9 THEN 'Completed' ELSE 'Failed' END, e.received_at
FROM e
"""

STATEMENTS = {
    "runs_page_in_namespace": (
        "NULL, NULL, NULL, 50, 'team-a', NULL",
        (None, None, None, 50, "team-a", None),
    ),
    "runs_page_in_namespace/status": (
        "NULL, NULL, NULL, 50, 'team-b', 'Failed'",
        (None, None, None, 50, "team-b", "Failed"),
    ),
    "list_events_in_namespace": (
        "NULL, NULL, 50, NULL, 'team-a', true",
        (None, None, 50, None, "team-a", True),
    ),
}


@pytest.mark.parametrize("name", sorted(STATEMENTS))
async def test_a_namespaces_lists_read_through_their_indexes(database_url: str, name: str) -> None:
    literals, args = STATEMENTS[name]
    query = QUERIES[name.partition("/")[0]]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(HISTORY)
        await conn.execute("ANALYZE")
        custom = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {query}", *args))
        await conn.execute(f"PREPARE statement AS {query}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        generic = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE statement({literals})"))
        populated = await tables_with_rows(conn)
    finally:
        await conn.close()
    for plan in (custom, generic):
        assert whole_reads(plan, populated) == [], plan
        if name.startswith("runs_page"):
            # The runs of the namespace come in the index's order: the first page reads one page of it.
            # Each day's partition has its copy of runs_namespace_created, named by Postgres.
            assert re.search(r"Index Scan using runs_p\d{8}_case_created_at_id_idx", plan), plan
            assert "Index Cond: ((CASE WHEN" in plan, plan
            assert not re.search(r"\bSort  \(", plan), plan
        else:
            # A namespace's events are found through an index: by time, keeping those of the namespace
            # (the plan for a namespace with many events), or through events_namespaces (a rare one).
            assert "Index Scan using events_received" in plan or "events_namespaces" in plan, plan
