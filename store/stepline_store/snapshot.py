"""The schema the migrations build, as text: ``sql/schema.sql`` is this dump of a freshly migrated database.

``dump`` runs Postgres's own ``pg_dump --schema-only`` (tables, indexes, functions, triggers, in its stable
order) and leaves out what changes from one database to the next: the dated day partitions of history
(``events_p20260101`` and the like, made by migration 0014 and by ``migrate`` around today; their parent
tables and the functions that make them are kept), the dump's version header and its random ``\\restrict``
key. ``scripts/generate-schema`` writes the snapshot; tests/test_store/test_schema_snapshot.py checks that the
migrations still rebuild it.
"""

from __future__ import annotations

import re
import subprocess
from importlib import resources
from pathlib import Path

# The day partitions of the history tables: a table name ending in _pYYYYMMDD (pg_dump's pattern syntax).
_DAY_PARTITIONS = "*_p[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]"
_VOLATILE_PREFIXES = ("\\restrict ", "\\unrestrict ", "-- Dumped from ", "-- Dumped by ")
_HEADER = (
    "-- The schema that Stepline's migrations build, written by scripts/generate-schema (never by hand):\n"
    "-- tests/test_store/test_schema_snapshot.py checks that migrating an empty database rebuilds it.\n"
)


def dump(pg_dump: Path, uri: str) -> str:
    """The schema of the database at ``uri``, normalised as above; ``pg_dump`` is the binary to run."""
    done = subprocess.run(
        [
            str(pg_dump),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            f"--exclude-table={_DAY_PARTITIONS}",
            "--dbname",
            uri,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {done.stderr.strip()}")
    lines = [line for line in done.stdout.splitlines() if not line.startswith(_VOLATILE_PREFIXES)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return f"{_HEADER}{text}\n"


def stored() -> str:
    """The snapshot kept in the package."""
    return resources.files("stepline_store.sql").joinpath("schema.sql").read_text("utf-8")


def path() -> Path:
    return Path(str(resources.files("stepline_store.sql").joinpath("schema.sql")))
