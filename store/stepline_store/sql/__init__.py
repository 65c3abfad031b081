"""Stepline's Postgres schema and every SQL statement it runs: ``migrations/`` and ``queries.sql``.

``migrations/`` holds the numbered schema migrations and ``queries.sql`` the named queries; this module
reads them. Nothing else in Stepline writes SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_QUERY_NAME = re.compile(r"^-- name: (\w+)(?: :(?:one|many|value|exec))?\s*$", re.MULTILINE)


def load_queries() -> dict[str, str]:
    """Split queries.sql into {name: statement}."""
    text = resources.files(__name__).joinpath("queries.sql").read_text("utf-8")
    parts = _QUERY_NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations in order: ``NNNN_name.sql`` files."""
    found = []
    for entry in resources.files(__name__).joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)
