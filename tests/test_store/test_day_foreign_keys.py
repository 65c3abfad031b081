"""A step and a failed attempt still need their run (migration 0019), now checked against the run's day: every
day's steps and step attempts, those made ahead by ``create_history_partitions`` too, have a foreign key to
that day's runs and none to the partitioned runs table (whose check cost a plan over every partition)."""

from __future__ import annotations

import datetime

import asyncpg
import pytest
from stepline_store import queries
from stepline_store.ids import new_run_id
from stepline_store.pool import connect

from tests.test_store.test_memo_written_once import RUN, STEP

ATTEMPT = """
INSERT INTO step_attempts (run_id, hash, attempt, error, ended_at) VALUES ($1, 'h', 1, '{}', now())
"""
KEYS = """
SELECT child.relname AS child, referenced.relname AS referenced
FROM pg_constraint k
JOIN pg_class child ON child.oid = k.conrelid
JOIN pg_class referenced ON referenced.oid = k.confrelid
WHERE k.contype = 'f' AND child.relname ~ '^(steps|step_attempts)'
"""
DAY_TABLES = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent IN ('steps'::regclass, 'step_attempts'::regclass)
"""


async def test_a_step_or_an_attempt_of_no_run_is_refused_and_of_a_run_is_kept(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        now = datetime.datetime.now(datetime.UTC)
        ghost = new_run_id(now)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(STEP, ghost, "h", "Completed", "1")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(ATTEMPT, ghost)
        run = new_run_id(now)
        await conn.execute(RUN, run, "evt-day-keys")
        await conn.execute(STEP, run, "h", "Completed", "1")
        await conn.execute(ATTEMPT, run)
        assert await conn.fetchval("SELECT count(*) FROM steps WHERE run_id = $1", run) == 1
        assert await conn.fetchval("SELECT count(*) FROM step_attempts WHERE run_id = $1", run) == 1
    finally:
        await conn.close()


async def test_every_day_has_its_keys_to_its_own_runs_and_the_parents_have_none(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        ahead = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=40)
        made = await queries.create_history_partitions(conn, first_day=ahead, last_day=ahead, lock_ms=1000)
        assert made == 1
        tables = {row["relname"] for row in await conn.fetch(DAY_TABLES)}
        assert f"steps_p{ahead:%Y%m%d}" in tables
        keys = {(row["child"], row["referenced"]) for row in await conn.fetch(KEYS)}
        wanted = {(table, "runs_" + table.rsplit("_", 1)[1]) for table in tables}
        assert keys == wanted
    finally:
        await conn.close()
