"""Every named query the code runs exists in stepline_store/sql/queries.sql, and every query there is used."""

from __future__ import annotations

import re
from pathlib import Path

from stepline_store.sql import load_queries

ROOT = Path(__file__).resolve().parents[2]
CALL = re.compile(r"""(?:fetch|fetchrow|fetchval|execute)\(\s*["'](\w+)["']""")
QUERIES_INDEX = re.compile(r"""QUERIES\[["'](\w+)["']\]""")


def used_names() -> set[str]:
    names: set[str] = set()
    for folder in ("store", "gateway", "operator", "cli"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            names |= set(CALL.findall(text)) | set(QUERIES_INDEX.findall(text))
    return names


def test_every_query_the_code_runs_exists() -> None:
    missing = used_names() - set(load_queries())
    assert not missing, f"queries used but not defined in queries.sql: {sorted(missing)}"


def test_every_defined_query_is_used() -> None:
    unused = set(load_queries()) - used_names()
    assert not unused, f"queries defined but never used: {sorted(unused)}"
