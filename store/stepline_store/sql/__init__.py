"""Stepline's Postgres schema and every SQL statement it runs: ``migrations/`` and ``queries.sql``.

``migrations/`` holds the numbered schema migrations and ``queries.sql`` the named queries; this module
reads them, with the annotations of each query (its kind, parameter names and nullable columns: the header
of queries.sql) from which ``stepline_store.queries`` is generated. Nothing else in Stepline writes SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_QUERY_NAME = re.compile(r"^-- name: (\w+)(?: :(?:one|many|value|exec))?\s*$", re.MULTILINE)
_QUERY_HEAD = re.compile(r"^-- name: (\w+) :(one|many|value|exec)\s*$", re.MULTILINE)
_PARAMS = re.compile(r"^-- params: (.+)$", re.MULTILINE)
_NULLABLE = re.compile(r"^-- nullable: (.+)$", re.MULTILINE)
_PROSE = re.compile(r"^-- (?!params: |nullable: )(.*)$", re.MULTILINE)


def load_queries() -> dict[str, str]:
    """Split queries.sql into {name: statement}."""
    text = resources.files(__name__).joinpath("queries.sql").read_text("utf-8")
    parts = _QUERY_NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@dataclass(frozen=True)
class Param:
    name: str
    # May be NULL: the caller may pass None.
    optional: bool


@dataclass(frozen=True)
class QuerySpec:
    """A named query with its annotations (the header of queries.sql says what each means)."""

    name: str
    kind: str
    params: tuple[Param, ...]
    nullable: frozenset[str]
    prose: str
    sql: str


def _names(found: re.Match[str] | None) -> list[str]:
    return [part.strip() for part in found.group(1).split(",")] if found else []


def query_specs() -> list[QuerySpec]:
    """Every query of queries.sql with its annotations, in file order; a query without a kind is an error."""
    text = resources.files(__name__).joinpath("queries.sql").read_text("utf-8")
    parts = _QUERY_HEAD.split(text)
    if len(parts[1::3]) != len(load_queries()):
        raise ValueError("every query in queries.sql needs a kind: -- name: <name> :one|many|value|exec")
    specs = []
    for name, kind, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        head = body.strip().split("\n\n")[0]
        comments = "\n".join(line for line in head.splitlines() if line.startswith("--"))
        params = tuple(Param(p.removesuffix("?"), p.endswith("?")) for p in _names(_PARAMS.search(comments)))
        specs.append(
            QuerySpec(
                name=name,
                kind=kind,
                params=params,
                nullable=frozenset(_names(_NULLABLE.search(comments))),
                prose=" ".join(_PROSE.findall(comments)),
                sql=body.strip(),
            )
        )
    return specs


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
