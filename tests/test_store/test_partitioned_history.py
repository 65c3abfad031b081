"""Migration 0014 turns a populated store into day-partitioned history: every event, run, step and failed
attempt survives (runs under UUIDv7 ids of their creation time, every reference following), a run that was
going finishes afterwards from its recorded steps, duplicate ids are still refused, and a gateway built for
the schema before refuses to start against it with a message saying why."""

from __future__ import annotations

import collections
import datetime
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import stepline
import stepline.asgi
from stepline.protocol import hash_step_id
from stepline_store import ids, schema
from stepline_store.errors import SchemaMismatch
from stepline_store.pool import QUERIES, connect
from stepline_store.sql import migrations

from tests.conftest import fresh_database
from tests.support import route, running_gateway, serve

# The latest version before partitioned history.
BEFORE = max(m.version for m in migrations() if m.version < schema.PARTITIONED_HISTORY)

# What a store at the version before holds: a finished run (two steps, one of them retried once) that a later
# run replays, and a run going, its first step recorded and its next call due. Run ids are UUIDv4, as before.
POPULATE = """
WITH e AS (
INSERT INTO events (id, name, data, ts, received_at) VALUES
    ('ev-done', 'mig/go', '{"n": 1}', 0, now() - interval '2 days'),
    ('ev-going', 'mig/go', '{"n": 2}', 0, now() - interval '1 hour')
), r AS (
INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, output, created_at,
                  started_at, ended_at, replay_of) VALUES
    ($1::uuid, 'ev-done', 'mig-two', 'two', $4, 3, 'Completed', '["a", "b"]', now() - interval '2 days',
     now() - interval '2 days', now() - interval '2 days', NULL),
    ($2, 'ev-done', 'mig-two', 'two', $4, 3, 'Completed', '["a", "b"]', now() - interval '1 day',
     now() - interval '1 day', now() - interval '1 day', $1::uuid),
    ($3, 'ev-going', 'mig-two', 'two', $4, 3, 'Running', NULL, now() - interval '1 hour',
     now() - interval '1 hour', NULL, NULL)
), s AS (
INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, started_at, ended_at) VALUES
    ($1, $5, 'first', 'StepRun', 'Completed', 1, '{"data": "a"}', now() - interval '2 days',
     now() - interval '2 days'),
    ($1, $6, 'second', 'StepRun', 'Completed', 2, '{"data": "b"}', now() - interval '2 days',
     now() - interval '2 days'),
    ($3, $5, 'first', 'StepRun', 'Completed', 1, '{"data": "recorded before"}', now() - interval '1 hour',
     now() - interval '1 hour')
), a AS (
INSERT INTO step_attempts (run_id, hash, attempt, error, ended_at) VALUES
    ($1, $6, 1, '{"name": "Error", "message": "flaky"}', now() - interval '2 days')
)
INSERT INTO work (run_id, step_id, available_at) VALUES ($3, 'step', now())
"""


async def migrate_to(conn: asyncpg.Connection, version: int) -> None:
    """Apply the migrations up to ``version``, as a Stepline of that version would."""
    await conn.execute(QUERIES["create_migrations_table"])
    for migration in migrations():
        if migration.version <= version:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(QUERIES["record_migration"], migration.version, migration.name)


@pytest.fixture
async def old_store(postgres_uri: str) -> AsyncIterator[str]:
    """A database of its own at the version before partitioned history (no template: it is migrated here)."""
    async for url in fresh_database(postgres_uri, template="template1"):
        yield url


async def test_the_migration_keeps_history_and_a_run_going_finishes_after_it(
    old_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: collections.Counter[str] = collections.Counter()
    client = stepline.Client("mig", dev=True, checkpoint=False)

    @client.function(id="two", trigger="mig/go")
    async def two(ctx: stepline.Context) -> list[str]:
        async def first() -> str:
            calls["first"] += 1
            return "a"

        async def second() -> str:
            calls["second"] += 1
            return "b"

        return [await ctx.step.run("first", first), await ctx.step.run("second", second)]

    done, replay, going = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with serve(stepline.asgi.serve_app(client, [two])) as app_url:
        url = f"{app_url}/api/inngest"
        conn = await connect(old_store)
        try:
            await migrate_to(conn, BEFORE)
            await conn.execute(
                POPULATE, done, replay, going, url, hash_step_id("first"), hash_step_id("second")
            )
            applied = [m.version for m in await schema.migrate(conn)]
            assert applied == list(range(schema.PARTITIONED_HISTORY, schema.latest_version() + 1))

            runs = {
                r["event_id"] + ("/replay" if r["replay_of"] else ""): r
                for r in await conn.fetch(
                    "SELECT id, event_id, replay_of, created_at, status, output,"
                    " tableoid::regclass::text AS part FROM runs"
                )
            }
            assert set(runs) == {"ev-done", "ev-done/replay", "ev-going"}
            for run in runs.values():
                # A UUIDv7 of its creation time, in the partition of its day.
                assert run["id"].version == 7
                assert abs(ids.run_id_time(run["id"]) - run["created_at"]) < datetime.timedelta(seconds=1)
                assert run["part"] == "runs_p" + run["created_at"].astimezone(datetime.UTC).strftime("%Y%m%d")
            assert runs["ev-done/replay"]["replay_of"] == runs["ev-done"]["id"]
            assert runs["ev-done"]["output"] == ["a", "b"]
            assert await conn.fetchval("SELECT count(*) FROM events") == 2
            steps = await conn.fetch("SELECT run_id, name, memo FROM steps ORDER BY run_id, name")
            assert [(s["run_id"], s["name"], s["memo"]) for s in steps] == sorted(
                [
                    (runs["ev-done"]["id"], "first", {"data": "a"}),
                    (runs["ev-done"]["id"], "second", {"data": "b"}),
                    (runs["ev-going"]["id"], "first", {"data": "recorded before"}),
                ],
                key=lambda s: (s[0], s[1]),
            )
            [attempt] = await conn.fetch("SELECT run_id, error FROM step_attempts")
            assert attempt["run_id"] == runs["ev-done"]["id"]
            assert attempt["error"]["message"] == "flaky"
            assert await conn.fetchval("SELECT run_id FROM work") == runs["ev-going"]["id"]
            # The foreign keys to runs are back, on the new table.
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(
                    "INSERT INTO work (run_id, step_id, available_at) VALUES ($1, 'x', now())",
                    ids.new_run_id(datetime.datetime.now(datetime.UTC)),
                )

            # A gateway of the version before refuses to start, and says why.
            monkeypatch.setattr(
                schema, "migrations", lambda: [m for m in migrations() if m.version <= BEFORE]
            )
            with pytest.raises(SchemaMismatch) as refused:
                await schema.verify(conn)
            monkeypatch.undo()
            message = str(refused.value)
            assert f"at version {schema.latest_version()}, newer than this Stepline ({BEFORE})" in message
            assert "0014 partitioned_history" in message
            assert "upgrade Stepline" in message
            await schema.verify(conn)
        finally:
            await conn.close()

        async with running_gateway(old_store) as gw:
            await gw.publish(route("mig-two", url, {"event": "mig/go"}))
            [run] = await gw.finished_runs("ev-going")
            assert run["status"] == "Completed"
            assert run["output"] == ["recorded before", "b"]
            assert calls == {"second": 1}  # the step recorded before the migration did not run again
            # An id kept from before the migration is still a duplicate: nothing new starts.
            assert await gw.send({"name": "mig/go", "id": "ev-done", "data": {"n": 1}}) == ["ev-done"]
            assert len(await gw.runs_of("ev-done")) == 2
            old = await gw.run(str(runs["ev-done"]["id"]))
            assert sorted(s["output"] for s in old["steps"]) == ["a", "b"]
