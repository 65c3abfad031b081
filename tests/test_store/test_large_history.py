"""A store with history over a week: ingest, claim and the dashboard's reads (first pages, deep pages, a run
with its steps) keep index plans, for the values and generic alike, with no day holding rows read whole; and
retention drops exactly the days past it. The same checks as benchmarks/history.py, on 30,000 runs instead
of a million (the benchmark's figures are in docs/scaling.md); speed is measured there, not here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from stepline_store.pool import QUERIES, connect

from benchmarks import history

RUNS = 30_000
DAYS = 6


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(database_url)
    await history.fill(conn, runs=RUNS, days=DAYS, queue=300)
    yield conn
    await conn.close()


async def test_hot_statements_read_no_day_whole(store: asyncpg.Connection) -> None:
    days_with_rows = await store.fetchval(
        "SELECT count(*) FROM pg_class WHERE relname ~ '^runs_p[0-9]{8}$' AND reltuples > 0"
    )
    assert days_with_rows >= DAYS
    checked = await history.statements(store, QUERIES)
    assert {s.name for s in checked} >= {"ingest", "claim_work", "runs_page first", "runs_page deep"}
    for statement in checked:
        assert await history.whole_reads(store, statement) == [], statement.name


async def test_a_day_read_whole_would_be_seen(store: asyncpg.Connection) -> None:
    # The check itself: without the index that serves it, the deep page reads the days whole.
    [deep] = [s for s in await history.statements(store, QUERIES) if s.name == "runs_page deep"]
    undone = store.transaction()
    await undone.start()
    try:
        await store.execute("DROP INDEX runs_created")
        assert await history.whole_reads(store, deep)
    finally:
        await undone.rollback()


async def test_retention_drops_the_days_past_it_and_nothing_newer(store: asyncpg.Connection) -> None:
    found = await history.check_retention(store, days=DAYS)
    assert found["dropped"], found
    assert found["exactly_the_expired_days"], found
    assert found["newer_runs_after"] == found["newer_runs_before"] > 0, found
