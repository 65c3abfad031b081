"""What Postgres can store, found without walking clean documents, and agreeing with Postgres itself.

The byte scan that lets clean bodies skip the walk must never call a body clean that holds a value
Postgres refuses: a property test over random documents in every encoding checks that, and a real
database checks that what ``problem`` lets through is stored and what it refuses is refused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stepline_gateway import storable

# Characters of every kind, NUL and lone surrogates included; numbers of every size, non-finite ones too.
text = st.text(st.characters(codec=None, categories=None), max_size=8)
numbers = st.integers(min_value=-(10**250), max_value=10**250) | st.floats(
    allow_nan=True, allow_infinity=True
)
documents = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=2000, deadline=None, derandomize=True, database=None)
@given(document=documents, ascii_only=st.booleans())
def test_a_body_the_scan_calls_clean_holds_nothing_postgres_refuses(document: Any, ascii_only: bool) -> None:
    raw = json.dumps(document, allow_nan=True, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    parsed = storable.parse_document(raw)
    if parsed.clean:
        assert storable.problem(parsed.value) is None, raw


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b'{"a": "x\\u0000y"}', "a NUL character at a"),
        (b'{"a\\u0000": 1}', "a NUL character in a key at the top level"),
        (b'["\\ud800"]', "a lone UTF-16 surrogate (invalid Unicode) at [0]"),
        (b'{"a": {"b": "\xed\xb0\x80"}}', "a lone UTF-16 surrogate (invalid Unicode) at a.b"),
        (b'{"a": [NaN]}', "a number JSON cannot hold (nan) at a[0]"),
        (b'{"a": -Infinity}', "a number JSON cannot hold (-inf) at a"),
        (b'{"a": 1E+400}', "a number JSON cannot hold (inf) at a"),
        (b'{"a": ' + b"9" * 250 + b"e99}", "a number JSON cannot hold (inf) at a"),
        (b'{"a": ' + b"[" * 101 + b"]" * 101 + b"}", "nesting deeper than 100 levels at a" + "[0]" * 99),
        (b'{"a": "\\ud83d\\ude00", "b": 1e308, "c": 1e-400}', None),
    ],
)
def test_problems_are_found_with_their_path(raw: bytes, found: str | None) -> None:
    parsed = storable.parse_document(raw)
    assert storable.problem(parsed.value) == found
    if found is not None:
        assert not parsed.clean


@pytest.mark.parametrize(
    "raw",
    [b"[" * 5000 + b"]" * 5000, '"x"'.encode("utf-16"), b'{"a": 1', b"\xff", b'{"a": ' + b"1" * 5000 + b"}"],
    ids=["5000 deep", "utf-16", "cut short", "not utf-8", "5000 digits"],
)
def test_bodies_that_are_not_json_are_refused_without_a_crash(raw: bytes) -> None:
    with pytest.raises(storable.InvalidJson):
        storable.parse_document(raw)


def test_text_that_is_only_shown_is_cleaned_not_refused() -> None:
    assert storable.clean_text("a\x00b\ud800", limit=100) == "a\ufffdb\ufffd"
    assert storable.clean_text("x" * 50, limit=10) == "x" * 9 + "\u2026"
    assert storable.clean_text({"not": "text"}, limit=100) == '{"not": "text"}'


@pytest.fixture(scope="module")
async def conn(module_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(module_database_url)
    yield connection
    await connection.close()


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(document=documents)
async def test_postgres_stores_what_problem_lets_through_and_refuses_the_rest(
    conn: asyncpg.Connection, document: Any
) -> None:
    found = storable.problem(document)
    encoded = json.dumps(document, allow_nan=True)
    if found is None:
        await conn.fetchval("SELECT $1::text::jsonb", encoded)
    else:
        with pytest.raises(asyncpg.PostgresError):
            await conn.fetchval("SELECT $1::text::jsonb", encoded)
