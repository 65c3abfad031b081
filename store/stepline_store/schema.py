"""Schema migrations: numbered SQL files applied in order under an advisory lock.

``stepline migrate`` (and the chart's hook Job, and ``stepline dev``) call ``migrate``; a serving gateway
calls ``verify`` and refuses to start on a database at another version. ``migrate`` also makes the days of
partitioned history around today (history.py), so that a database just migrated takes writes at once.
"""

from __future__ import annotations

import datetime

from stepline_store import history, queries
from stepline_store.errors import SchemaMismatch
from stepline_store.pool import Connection
from stepline_store.sql import Migration, migrations

# An arbitrary constant: the key of the advisory lock that serialises migrations across processes.
_LOCK_KEY = 0x5354_4550  # "STEP"
# The first version whose history is partitioned by day.
PARTITIONED_HISTORY = 14


def latest_version() -> int:
    return migrations()[-1].version


async def current_version(conn: Connection) -> int:
    return await queries.schema_version(conn)


async def migrate(conn: Connection) -> list[Migration]:
    """Apply what is missing, each migration in its own transaction; return what was applied."""
    applied = []
    await queries.lock_migrations(conn, lock_key=_LOCK_KEY)
    try:
        await queries.create_migrations_table(conn)
        have = await current_version(conn)
        for migration in migrations():
            if migration.version <= have:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await queries.record_migration(conn, version=migration.version, name=migration.name)
            applied.append(migration)
        if await current_version(conn) >= PARTITIONED_HISTORY:
            now = await queries.clock_now(conn, clock_offset=datetime.timedelta(0))
            await history.make_days(conn, now)
    finally:
        await queries.unlock_migrations(conn, lock_key=_LOCK_KEY)
    return applied


async def verify(conn: Connection) -> None:
    have, need = await current_version(conn), latest_version()
    if have < need:
        raise SchemaMismatch(
            f"the database schema is at version {have}, this Stepline needs {need}: run `stepline migrate`"
        )
    if have > need:
        names = await queries.migrations_after(conn, version=need)
        raise SchemaMismatch(
            f"the database schema is at version {have}, newer than this Stepline ({need}): the database has"
            f" been migrated by a later Stepline ({', '.join(names)}), which this one cannot read or write;"
            " upgrade Stepline to the version that migrated it"
        )
