"""A recorded step's memo is written once: the database refuses to change it, whichever statement tries
(migration 0018), and still lets a step not yet recorded be written."""

from __future__ import annotations

import datetime

import asyncpg
from stepline_store.ids import new_run_id
from stepline_store.pool import connect

RUN = """
WITH e AS (
    INSERT INTO events (id, name, data, ts, received_at) VALUES ($2, 'memo/go', '{}', 0, now())
)
INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at, started_at)
VALUES ($1, $2, 'memo-fn', 'fn', 'http://127.0.0.1:9/api/inngest', 3, 'Running', now(), now())
"""
STEP = """
INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, started_at)
VALUES ($1, $2, $2, 'StepRun', $3, 1, $4::jsonb, now())
"""
# An upsert with no condition of its own, as a careless statement would write it.
UPSERT = """
INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, started_at)
VALUES ($1, $2, $2, 'StepRun', 'Completed', 2, '{"data": "again"}', now())
ON CONFLICT (run_id, hash) DO UPDATE SET memo = EXCLUDED.memo, attempts = EXCLUDED.attempts,
                                        status = EXCLUDED.status
RETURNING hash
"""


async def _steps(conn: asyncpg.Connection, run_id: object) -> dict[str, tuple[object, int, str]]:
    rows = await conn.fetch("SELECT hash, memo, attempts, status FROM steps WHERE run_id = $1", run_id)
    return {row["hash"]: (row["memo"], row["attempts"], row["status"]) for row in rows}


async def test_a_recorded_memo_is_never_changed_and_a_pending_step_still_is(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        run_id = new_run_id(datetime.datetime.now(datetime.UTC))
        await conn.execute(RUN, run_id, f"ev-{run_id}")
        await conn.execute(STEP, run_id, "recorded", "Completed", {"data": "first"})
        await conn.execute(STEP, run_id, "pending", "Planned", None)

        # An upsert of both: the recorded step is left out (RETURNING says so), the pending one is written.
        written = [await conn.fetchval(UPSERT, run_id, h) for h in ("recorded", "pending")]
        assert written == [None, "pending"]
        # A plain UPDATE of every step of the run changes only the one not recorded yet.
        await conn.execute(STEP, run_id, "waiting", "Planned", None)
        status = await conn.execute(
            "UPDATE steps SET memo = '{\"data\": \"overwritten\"}', status = 'Failed' WHERE run_id = $1",
            run_id,
        )
        assert status == "UPDATE 1"
        assert await _steps(conn, run_id) == {
            "recorded": ({"data": "first"}, 1, "Completed"),
            "pending": ({"data": "again"}, 2, "Completed"),
            "waiting": ({"data": "overwritten"}, 1, "Failed"),
        }
    finally:
        await conn.close()
