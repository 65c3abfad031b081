"""Schema migrations: numbered SQL files applied in order under an advisory lock.

``stepline migrate`` (and the chart's hook Job, and ``stepline dev``) call ``migrate``; a serving gateway
calls ``verify`` and refuses to start on a database at another version.
"""

from __future__ import annotations

from stepline_store.errors import SchemaMismatch
from stepline_store.pool import QUERIES, Connection
from stepline_store.sql import Migration, migrations

# An arbitrary constant: the key of the advisory lock that serialises migrations across processes.
_LOCK_KEY = 0x5354_4550  # "STEP"


def latest_version() -> int:
    return migrations()[-1].version


async def current_version(conn: Connection) -> int:
    version: int = await conn.fetchval(QUERIES["schema_version"])
    return version


async def migrate(conn: Connection) -> list[Migration]:
    """Apply what is missing, each migration in its own transaction; return what was applied."""
    applied = []
    await conn.execute(QUERIES["lock_migrations"], _LOCK_KEY)
    try:
        await conn.execute(QUERIES["create_migrations_table"])
        have = await current_version(conn)
        for migration in migrations():
            if migration.version <= have:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(QUERIES["record_migration"], migration.version, migration.name)
            applied.append(migration)
    finally:
        await conn.execute(QUERIES["unlock_migrations"], _LOCK_KEY)
    return applied


async def verify(conn: Connection) -> None:
    have, need = await current_version(conn), latest_version()
    if have < need:
        raise SchemaMismatch(
            f"the database schema is at version {have}, this Stepline needs {need}: run `stepline migrate`"
        )
    if have > need:
        raise SchemaMismatch(
            f"the database schema is at version {have}, newer than this Stepline ({need}): upgrade Stepline"
        )
