"""A store with history over a week: ingest, claim and the dashboard's reads (first pages, deep pages, a run
with its steps) keep index plans, for the values and generic alike, with no day holding rows read whole; and
retention drops exactly the days past it. The same checks as benchmarks/history.py, on 30,000 runs instead
of a million (the benchmark's figures are in docs/scaling.md); speed is measured there, not here."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

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


# Three days ago: a batch run of two events, one of them also skipped by another function; two days ago, a
# batch run still collecting that holds an event of three days ago.
BATCHES = """
WITH e AS (
    INSERT INTO events (id, name, data, ts, received_at) VALUES
        ('old-1', 'b/go', '{}', 0, now() - interval '3 days'),
        ('old-2', 'b/go', '{}', 0, now() - interval '3 days'),
        ('later', 'b/go', '{}', 0, now() - interval '2 days')
    RETURNING id
), r AS (
    INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at,
                      batched)
    VALUES ($1, 'old-1', 'b-f', 'f', 'http://127.0.0.1:9', 1, 'Completed', now() - interval '3 days', true),
           ($2, 'later', 'b-f', 'f', 'http://127.0.0.1:9', 1, 'Queued', now() - interval '2 days', true)
    RETURNING id
), b AS (
    INSERT INTO batch_events (run_id, position, event_id)
    VALUES ($1, 0, 'old-1'), ($1, 1, 'old-2'), ($2, 0, 'later'), ($2, 1, 'old-2')
)
INSERT INTO skipped_events (event_id, function_id, reason, skipped_at)
VALUES ('old-2', 'other-f', 'rate_limited', now() - interval '3 days')
"""


async def test_a_batch_collecting_keeps_the_day_of_its_events_and_the_day_goes_with_its_rows(
    database_url: str,
) -> None:
    conn = await connect(database_url)
    try:
        now = await conn.fetchval("SELECT statement_timestamp()")
        old = await conn.fetchval("SELECT stepline_uuid7($1)", now - datetime.timedelta(days=3))
        collecting = await conn.fetchval("SELECT stepline_uuid7($1)", now - datetime.timedelta(days=2))
        await conn.execute(BATCHES, old, collecting)
        # The day three days ago has ended before the cutoff; the one two days ago has not.
        two_days_ago = (now - datetime.timedelta(days=2)).astimezone(datetime.UTC).date()
        cutoff = datetime.datetime.combine(two_days_ago, datetime.time(), datetime.UTC)
        old_day = two_days_ago - datetime.timedelta(days=1)

        def drop() -> Any:
            return conn.fetchval("SELECT stepline_drop_history_before($1, 200)", cutoff)

        assert old_day not in await drop()
        await conn.execute("UPDATE runs SET status = 'Completed' WHERE id = $1", collecting)
        assert old_day in await drop()
        assert await conn.fetchval("SELECT count(*) FROM events WHERE id LIKE 'old-%'") == 0
        assert await conn.fetchval("SELECT count(*) FROM skipped_events") == 0
        # The later batch keeps its own event; the one of the day dropped is gone with it.
        assert [
            r["event_id"] for r in await conn.fetch("SELECT event_id FROM batch_events ORDER BY position")
        ] == ["later"]
    finally:
        await conn.close()
