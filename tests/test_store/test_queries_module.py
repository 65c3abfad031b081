"""``stepline_store.queries`` is what scripts/generate-queries makes of queries.sql and the schema, and the
generator refuses annotations that do not match the statements."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from stepline_store import queries, query_module
from stepline_store.pool import connect
from stepline_store.sql import Param, query_specs


async def _described(url: str) -> list[query_module.Described]:
    conn = await connect(url)
    try:
        return await query_module.describe(conn)
    finally:
        await conn.close()


async def test_the_module_is_what_the_queries_and_the_schema_make(database_url: str) -> None:
    stored = Path(queries.__file__).read_text("utf-8")
    assert query_module.render(await _described(database_url)) == stored, (
        "stepline_store/queries.py no longer matches queries.sql: run scripts/generate-queries"
    )


def test_every_query_has_a_function() -> None:
    for spec in query_specs():
        assert callable(getattr(queries, spec.name)), spec.name


async def test_annotations_that_do_not_match_the_statement_are_refused(database_url: str) -> None:
    described = await _described(database_url)
    item = next(d for d in described if d.spec.name == "get_run")
    too_few = dataclasses.replace(item, spec=dataclasses.replace(item.spec, params=()))
    with pytest.raises(ValueError, match="the statement has 1"):
        query_module.render([too_few])
    twice = dataclasses.replace(item, spec=dataclasses.replace(item.spec, params=(Param("for", False),)))
    with pytest.raises(ValueError, match="distinct Python identifiers"):
        query_module.render([twice])
    stray = dataclasses.replace(item, spec=dataclasses.replace(item.spec, nullable=frozenset({"nope"})))
    with pytest.raises(ValueError, match="names no column"):
        query_module.render([stray])
