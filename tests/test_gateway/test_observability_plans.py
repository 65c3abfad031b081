"""The statements behind the metrics and the live counts stay cheap on a large store: the queue read once
with each run by primary key, never the run history; the operator's counts through the runs' indexes. Both
with the plan Postgres makes for the values and the one it may cache for any value."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator
from typing import Any

import asyncpg
from stepline_store.pool import QUERIES

from tests.test_gateway.test_queue_plans import QUEUE

# A history of 100,000 ended runs of 50 functions beside the queue: what a week of traffic leaves.
HISTORY = """
WITH f AS (
    INSERT INTO functions (id, app_id, name, url, triggers, retries, source)
    SELECT 'hist-f' || g, 'hist', 'f' || g, 'http://127.0.0.1:9', '[]', 3, 'kubernetes:shop/f' || g
    FROM generate_series(1, 50) g RETURNING id
), e AS (
    INSERT INTO events (id, name, data, ts, received_at)
    SELECT 'hist-' || g, 'hist/go', '{}', 0, now() - g * interval '6 seconds'
    FROM generate_series(1, 100000) g
    RETURNING id, received_at
)
INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at, ended_at)
SELECT stepline_uuid7(e.received_at), e.id, 'hist-f' || (1 + abs(hashtext(e.id)) % 50), 'f',
       'http://127.0.0.1:9', 3,
       CASE WHEN random() < 0.9 THEN 'Completed' ELSE 'Failed' END, e.received_at, e.received_at
FROM e
"""


async def explain(database_url: str, name: str, literals: str, args: tuple[object, ...]) -> list[str]:
    query = QUERIES[name]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(QUEUE)
        await conn.execute(HISTORY)
        await conn.execute("ANALYZE")
        custom = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {query}", *args))
        await conn.execute(f"PREPARE statement AS {query}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        generic = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE statement({literals})"))
        # Runs are partitioned by day: a day is read whole only where the read keeps most of its rows (the
        # day of the queue here, whose runs are nearly all Queued or Running), never to pick a few.
        sizes = {
            row["relname"]: row["reltuples"]
            for row in await conn.fetch(
                "SELECT relname, reltuples FROM pg_class WHERE relname LIKE 'runs_p%'"
            )
        }
        for sql in (f"EXPLAIN (FORMAT JSON) {query}", f"EXPLAIN (FORMAT JSON) EXECUTE statement({literals})"):
            args_of = args if sql.endswith(query) else ()
            [plan] = json.loads(await conn.fetchval(sql, *args_of))
            for node in nodes_of(plan["Plan"]):
                table = node.get("Relation Name", "")
                if node["Node Type"] == "Seq Scan" and sizes.get(table, 0) > 0:
                    assert node["Plan Rows"] >= sizes[table] / 2, (table, node, custom, generic)
    finally:
        await conn.close()
    return [custom, generic]


def nodes_of(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes_of(child)


async def test_the_queue_gauges_read_the_queue_once_and_runs_by_primary_key(database_url: str) -> None:
    for plan in await explain(database_url, "queue_depth", "'0 s'", (datetime.timedelta(0),)):
        assert "Bitmap Heap Scan on runs" not in plan, plan
        assert re.search(r"runs_pkey_p\d{8} on runs_p\d{8}", plan), plan
        assert plan.count("on work") == 1, plan
        assert "on steps" not in plan, plan
        assert "on events" not in plan, plan


async def test_the_live_counts_read_runs_through_their_indexes(database_url: str) -> None:
    for plan in await explain(
        database_url, "function_stats", "'{kubernetes:%}', 10000", (["kubernetes:%"], 10000)
    ):
        assert "runs_function_created" in plan, plan
