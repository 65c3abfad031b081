"""Writes ``stepline_store/queries.py``: one typed async function per named query of ``sql/queries.sql``.

The types are Postgres's own: each statement is prepared on a migrated database and described (the
parameter types and the result columns with theirs), and the annotations of queries.sql add what Postgres
cannot say (the keyword names of the parameters, which may be NULL, which columns may be NULL, and whether
the caller wants rows, one row, a value or the command status). Rows are the asyncpg records themselves,
typed as ``TypedDict`` classes: no copy per row on the hot path, and mypy checks every column a caller
reads. ``scripts/generate-queries`` writes the module; tests/test_store/test_queries_module.py fails when it
no longer matches queries.sql and the schema.
"""

from __future__ import annotations

import keyword
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import asyncpg

from stepline_store.sql import QuerySpec, query_specs

_SCALARS = {
    "bool": "bool",
    "bytea": "bytes",
    "date": "datetime.date",
    "float4": "float",
    "float8": "float",
    "int2": "int",
    "int4": "int",
    "int8": "int",
    "interval": "datetime.timedelta",
    "json": "Any",
    "jsonb": "Any",
    "name": "str",
    "numeric": "decimal.Decimal",
    "oid": "int",
    "text": "str",
    "timestamptz": "datetime.datetime",
    "uuid": "uuid.UUID",
    "varchar": "str",
    "void": "None",
}

_WIDTH = 110

_HEADER = '''"""One typed async function per named query of ``sql/queries.sql``.

Written by scripts/generate-queries from the queries and their annotations, with the types Postgres reports
for each statement (never edit it by hand; stepline_store/query_module.py says how it is made).

Each function takes the store (a ``Store``, whose statements are counted, or a bare connection or pool) and
the query's parameters by keyword; ``on`` runs it on a connection of a transaction the caller holds. Rows are
asyncpg records typed as the ``TypedDict`` classes below: read, never written.
"""

from __future__ import annotations

'''


@dataclass(frozen=True)
class Described:
    spec: QuerySpec
    params: tuple[asyncpg.types.Type, ...]
    columns: tuple[asyncpg.types.Attribute, ...]


def _scalar(type_: asyncpg.types.Type) -> str:
    if type_.name not in _SCALARS:
        raise ValueError(f"no Python type for Postgres type {type_.name!r}: add it to query_module._SCALARS")
    return _SCALARS[type_.name]


def _python(type_: asyncpg.types.Type, *, param: bool) -> str:
    if type_.kind == "array":
        element = _SCALARS.get(type_.name.removesuffix("[]"))
        if element is None:
            raise ValueError(f"no Python type for Postgres array type {type_.name!r}")
        if not param:
            # The arrays that queries answer are aggregates of values that are never NULL.
            return f"list[{element}]"
        return f"Sequence[{element if element in ('Any', 'None') else f'{element} | None'}]"
    return _scalar(type_)


def _optional(python: str) -> str:
    return python if python in ("Any", "None") else f"{python} | None"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _row_class(item: Described) -> tuple[str, str]:
    """The TypedDict of a query's rows: its name and its source."""
    name = f"{_camel(item.spec.name)}Row"
    fields = []
    for column in item.columns:
        python = _python(column.type, param=False)
        if column.name in item.spec.nullable:
            python = _optional(python)
        fields.append((column.name, python))
    if all(n.isidentifier() and not keyword.iskeyword(n) for n, _ in fields):
        body = "\n".join(f"    {n}: {t}" for n, t in fields)
        return name, f"class {name}(TypedDict):\n{body}\n"
    listed = ", ".join(f'"{n}": {t}' for n, t in fields)
    return name, f'{name} = TypedDict("{name}", {{{listed}}})\n'


def _summary(prose: str) -> str:
    first = prose.split(". ")[0].strip().rstrip(".")
    return first.replace('"""', "'''").replace("\\", "\\\\") if first else ""


def _check(item: Described) -> None:
    spec = item.spec
    if len(spec.params) != len(item.params):
        raise ValueError(
            f"{spec.name}: -- params: names {len(spec.params)} parameters, "
            f"the statement has {len(item.params)}"
        )
    names = [p.name for p in spec.params]
    if len(set(names)) != len(names) or any(not n.isidentifier() or keyword.iskeyword(n) for n in names):
        raise ValueError(f"{spec.name}: parameter names must be distinct Python identifiers: {names}")
    unknown = spec.nullable - {c.name for c in item.columns}
    if unknown:
        raise ValueError(f"{spec.name}: -- nullable: names no column of the result: {sorted(unknown)}")
    if spec.kind in ("one", "many", "value") and not item.columns:
        raise ValueError(f"{spec.name}: a :{spec.kind} query must return columns")


def _function(item: Described) -> tuple[str | None, str]:
    """The row class (if any) and the function of one query."""
    spec = item.spec
    _check(item)
    arguments = ["db: Db", "*"] if spec.params else ["db: Db"]
    for param, type_ in zip(spec.params, item.params, strict=True):
        python = _python(type_, param=True)
        arguments.append(f"{param.name}: {_optional(python) if param.optional else python}")
    arguments.append("on: Queryable = None")
    values = "".join(f"{p.name}, " for p in spec.params)
    call_args = f'db, "{spec.name}", ({values.rstrip(", ")}{"," if len(spec.params) == 1 else ""}), on'
    if not spec.params:
        call_args = f'db, "{spec.name}", (), on'
    row_class: str | None = None
    row_source: str | None = None
    if spec.kind == "many":
        row_class, row_source = _row_class(item)
        returns = f"list[{row_class}]"
        body = f'return cast("{returns}", await fetch({call_args}))'
    elif spec.kind == "one":
        row_class, row_source = _row_class(item)
        returns = f"{row_class} | None"
        body = f'return cast("{returns}", await fetchrow({call_args}))'
    elif spec.kind == "value":
        first = item.columns[0]
        returns = _python(first.type, param=False)
        if first.name in spec.nullable:
            returns = _optional(returns)
        body = f'return cast("{returns}", await fetchval({call_args}))'
    else:
        returns = "str"
        body = f"return await execute({call_args})"
    signature = f"async def {spec.name}({', '.join(arguments)}) -> {returns}:"
    if len(signature) > 110:
        joined = "".join(f"    {a},\n" for a in arguments)
        signature = f"async def {spec.name}(\n{joined}) -> {returns}:"
    summary = _summary(spec.prose)
    doc = ""
    if summary and not summary.startswith("$"):
        # Room for the closing quotes on the last line, where ruff format puts them on a one-line docstring.
        text = textwrap.fill(
            summary + ".", width=_WIDTH - 3, initial_indent='    """', subsequent_indent="    "
        )
        doc = f'{text}"""\n' if "\n" not in text else f'{text}\n    """\n'
    return row_source, f"{signature}\n{doc}    {body}\n"


async def describe(conn: asyncpg.Connection) -> list[Described]:
    """Every query of queries.sql as Postgres describes it on ``conn`` (a migrated database)."""
    described = []
    for spec in query_specs():
        statement = await conn.prepare(spec.sql)
        described.append(Described(spec, statement.get_parameters(), statement.get_attributes()))
    return described


def formatted(source: str) -> str:
    """``source`` as ``ruff format`` writes it (the project's formatter and its settings)."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", "queries.py", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ruff format failed: {done.stderr.strip()}")
    return done.stdout


def render(described: list[Described]) -> str:
    """The source of ``stepline_store/queries.py``, formatted."""
    parts = []
    for item in described:
        row_source, function = _function(item)
        if row_source:
            parts.append(f"\n\n{row_source}")
        parts.append(f"\n\n{function}")
    body = "".join(parts)
    imports = [f"import {m}\n" for m in ("datetime", "decimal", "uuid") if f"{m}." in body]
    if "Sequence[" in body:
        imports.append("from collections.abc import Sequence\n")
    typing = ", ".join(n for n in ("Any", "TypedDict", "cast") if n in body)
    imports.append(f"from typing import {typing}\n")
    used = ", ".join(f for f in ("execute", "fetch", "fetchrow", "fetchval") if f"await {f}(" in body)
    imports.append(f"\nfrom stepline_store.pool import Db, Queryable, {used}\n")
    return formatted(_HEADER + "".join(imports) + body)
