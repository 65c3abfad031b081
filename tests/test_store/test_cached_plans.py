"""The plans Postgres keeps for Stepline's prepared statements read no hot table whole, even when they were
made while the tables were nearly empty.

asyncpg keeps every statement prepared, and after five runs Postgres settles on one plan for any values (a
generic plan) and keeps it for the connection's life. Made on a small queue, or on the first hours of a new
day's partitions, that plan would read those tables whole and go on doing so as they fill: in a burst the
claim then scanned today's steps once per call it claimed. These tests make the generic plans on a freshly
migrated store, where every table is nearly empty, on a connection of Stepline's pool (``SESSION_SETTINGS``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest
from stepline_store.pool import QUERIES, create_pool
from stepline_store.sql import query_specs

from benchmarks.history import plan_nodes

# The tables that grow with the work: the queue and the history's day partitions.
HOT = re.compile(r"^(work|runs|steps|events)(_p\d{8})?$")

# Statements EXPLAIN does not take (DDL).
NOT_EXPLAINED = {"create_migrations_table"}

# The statements of a run's path, which the whole check must have covered.
HOT_PATH = {"ingest", "claim_work", "record_steps_many", "finish_runs_many", "next_due", "extend_leases"}


async def generic_whole_reads(conn: asyncpg.Connection, name: str) -> list[str]:
    """The hot tables the generic plan of ``name`` reads whole (its parameters all NULL: a generic plan is the
    same for any values; the pool's connections decode the JSON plan)."""
    spec = next(s for s in query_specs() if s.name == name)
    nulls = [None] * len(spec.params)
    [plan] = await conn.fetchval(f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {QUERIES[name]}", *nulls)
    return sorted(
        {
            node["Relation Name"]
            for node in plan_nodes(plan["Plan"])
            if node["Node Type"] == "Seq Scan" and HOT.match(node.get("Relation Name", ""))
        }
    )


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    async with pool.acquire() as connection:
        yield connection
    await pool.close()


async def test_no_generic_plan_reads_a_hot_table_whole(conn: asyncpg.Connection) -> None:
    checked = [spec.name for spec in query_specs() if spec.name not in NOT_EXPLAINED]
    assert set(checked) >= HOT_PATH
    found = {name: whole for name in checked if (whole := await generic_whole_reads(conn, name))}
    assert found == {}


async def test_without_the_session_settings_the_claim_reads_today_whole(conn: asyncpg.Connection) -> None:
    # The check itself, and why the settings are there: a plain session plans the claim, ingest and the
    # run ends on the empty store with whole reads of the queue and of today's partitions.
    await conn.execute("SET enable_seqscan = on")
    assert any(table.startswith("steps_p") for table in await generic_whole_reads(conn, "claim_work"))
    assert await generic_whole_reads(conn, "ingest")
    assert await generic_whole_reads(conn, "finish_runs_many")
