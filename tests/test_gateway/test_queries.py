"""Every named query of stepline_store/sql/queries.sql is used, and only through its typed function of
``stepline_store.queries``: no code outside the store runs a query by its name or its SQL."""

from __future__ import annotations

import re
from pathlib import Path

from stepline_store.sql import load_queries

ROOT = Path(__file__).resolve().parents[2]
TYPED_CALL = re.compile(r"\bqueries\.(\w+)\(")
IMPORTS_QUERIES = re.compile(r"^from stepline_store import (?:.*, )?queries\b", re.MULTILINE)
BY_NAME = re.compile(r"""(?:fetch|fetchrow|fetchval|execute)\(\s*["'](\w+)["']|QUERIES\[["'](\w+)["']\]""")
# The store's own plumbing: the generated module and the pool that runs its statements.
PLUMBING = {ROOT / "store" / "stepline_store" / "queries.py", ROOT / "store" / "stepline_store" / "pool.py"}


def sources() -> list[Path]:
    return [p for folder in ("store", "gateway", "operator", "cli") for p in (ROOT / folder).rglob("*.py")]


def test_every_query_is_called_through_its_typed_function() -> None:
    used: set[str] = set()
    for path in sources():
        text = path.read_text()
        if path not in PLUMBING and IMPORTS_QUERIES.search(text):
            used |= set(TYPED_CALL.findall(text))
    defined = set(load_queries())
    assert not used - defined, f"typed calls of queries not in queries.sql: {sorted(used - defined)}"
    # ping is run by the pool itself (Store.ping, with a timeout).
    assert not defined - used - {"ping"}, f"queries defined but never used: {sorted(defined - used)}"


def test_no_code_outside_the_store_runs_a_query_by_name() -> None:
    found = {
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in sources()
        if path not in PLUMBING
        for match in BY_NAME.finditer(path.read_text())
    }
    assert not found, f"queries run by name instead of through stepline_store.queries: {sorted(found)}"
