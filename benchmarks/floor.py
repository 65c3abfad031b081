"""The raw floor: a workflow's own statements straight through asyncpg, no HTTP, no gateway, no service.

A three-step workflow, as the gateway runs it with the steps in the call's answer, is four of Stepline's
named queries (``stepline_store/sql/queries.sql``, the same text the gateway sends): ``ingest`` (the event,
its run and first call), ``claim_work`` (the lease), ``record_steps`` (the three steps) and ``finish_run``.
This module runs them for ``workflows`` workflows on a migrated database, two ways:

* **unbatched**: ``concurrency`` workers, each taking one workflow at a time through its four statements,
  each statement its own round trip and commit (what a gateway without batching could at best reach);
* **batched**: ``batch`` workflows at a time per worker (``batch_workers`` of them): one ``ingest`` of the
  batch's events, ``claim_work`` for the batch, and ``record_steps`` and ``finish_run`` for all of its runs
  as one pipelined ``executemany`` each, so four round trips and four commits per batch.

Its sessions carry the store's ``SESSION_SETTINGS``, as Stepline's own do. It reports workflows per second
and the CPU Postgres (and this client) used per workflow.
``benchmarks.e2e`` runs it in every trial, on a database of its own in the trial's Postgres, and puts
Stepline's figures beside it as a fraction; alone::

    .venv/bin/python -m benchmarks.floor [--workflows 2000] [--batch 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]
from stepline_store.ids import new_run_id
from stepline_store.pool import SESSION_SETTINGS
from stepline_store.sql import load_queries

QUERIES = load_queries()
FUNCTION_ID = "floor-three-steps"
URL = "http://127.0.0.1:1/api/inngest"
OWNER = "floor"
LEASE = datetime.timedelta(seconds=30)
NO_OFFSET = datetime.timedelta(0)
STEPS = ("a", "b", "c")


@dataclasses.dataclass
class FloorPhase:
    workflows: int
    seconds: float
    workflows_per_s: float
    postgres_ms_per_workflow: float
    client_ms_per_workflow: float


@dataclasses.dataclass
class FloorResult:
    unbatched: FloorPhase
    batched: FloorPhase
    concurrency: int
    batch: int
    batch_workers: int


async def _init(conn: asyncpg.Connection) -> None:
    # As the gateway's pool does: JSON in and out as text, no reset query when a connection is released.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The gateway's pool skips asyncpg's reset query; so does the floor."""


def _run_id() -> uuid.UUID:
    """A run id as the gateway makes them (UUIDv7: history is partitioned by the id's day)."""
    return new_run_id(datetime.datetime.now(datetime.UTC))


def _ingest_args(events: list[str], runs: list[uuid.UUID]) -> tuple[Any, ...]:
    count = len(events)
    return (
        events,
        ["floor/go"] * count,
        [{"i": i} for i in range(count)],
        [None] * count,
        [None] * count,
        NO_OFFSET,
        runs,
        events,
        [FUNCTION_ID] * count,
        ["three-steps"] * count,
        [URL] * count,
        [5] * count,
        [None] * count,
        [None] * count,
        [None] * count,
        [],
        None,
        NO_OFFSET,
        None,
    )


def _steps_args(work_id: int, token: uuid.UUID, run_id: uuid.UUID) -> tuple[Any, ...]:
    hashes = [f"{run_id.hex[:8]}-{name}" for name in STEPS]
    memos = [json.dumps({"data": {"step": name}}) for name in STEPS]
    return (
        work_id,
        token,
        run_id,
        hashes,
        list(STEPS),
        ["StepRun"] * 3,
        memos,
        [0.01] * 3,
        NO_OFFSET,
        False,
        None,
    )


def _finish_args(work_id: int, token: uuid.UUID, run_id: uuid.UUID) -> tuple[Any, ...]:
    return (run_id, "Completed", {"steps": [1, 2, 3]}, None, NO_OFFSET, work_id, token)


async def _claim(pool: asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(QUERIES["claim_work"], NO_OFFSET, limit, OWNER, LEASE, [])
    return rows


async def _unbatched(pool: asyncpg.Pool, workflows: int, concurrency: int) -> None:
    remaining = workflows
    # One token per committed, unclaimed call: a claim is made only when one is there to take.
    due: asyncio.Queue[None] = asyncio.Queue()

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            event_id = uuid.uuid4().hex
            await pool.fetchrow(QUERIES["ingest"], *_ingest_args([event_id], [_run_id()]))
            due.put_nowait(None)
            await due.get()
            # A claim racing the others' can come back empty while a call is due (it skipped a row that
            # another claim held for the moment): it goes again, as the dispatcher does when woken.
            rows: list[asyncpg.Record] = []
            while not rows:
                rows = await _claim(pool, 1)
            [row] = rows
            await pool.fetchrow(
                QUERIES["record_steps"], *_steps_args(row["id"], row["lease_token"], row["run_id"])
            )
            await pool.fetchrow(
                QUERIES["finish_run"], *_finish_args(row["id"], row["lease_token"], row["run_id"])
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _batched(pool: asyncpg.Pool, workflows: int, batch: int, workers: int) -> None:
    remaining = workflows

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            size = min(batch, remaining)
            remaining -= size
            events = [uuid.uuid4().hex for _ in range(size)]
            await pool.fetchrow(QUERIES["ingest"], *_ingest_args(events, [_run_id() for _ in events]))
            claimed: list[asyncpg.Record] = []
            while len(claimed) < size:
                claimed += await _claim(pool, size - len(claimed))
            async with pool.acquire() as conn:
                await conn.executemany(
                    QUERIES["record_steps"],
                    [_steps_args(r["id"], r["lease_token"], r["run_id"]) for r in claimed],
                )
                await conn.executemany(
                    QUERIES["finish_run"],
                    [_finish_args(r["id"], r["lease_token"], r["run_id"]) for r in claimed],
                )

    await asyncio.gather(*(worker() for _ in range(workers)))


def _cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    except psutil.Error:
        return 0.0
    return total


async def _phase(run: Callable[[], Any], workflows: int, postgres_pid: int | None) -> FloorPhase:
    me = psutil.Process()
    pg0, me0 = _cpu(postgres_pid), sum(me.cpu_times()[:2])
    t0 = time.perf_counter()
    await run()
    seconds = time.perf_counter() - t0
    pg1, me1 = _cpu(postgres_pid), sum(me.cpu_times()[:2])
    return FloorPhase(
        workflows=workflows,
        seconds=seconds,
        workflows_per_s=workflows / seconds,
        postgres_ms_per_workflow=1000 * (pg1 - pg0) / workflows,
        client_ms_per_workflow=1000 * (me1 - me0) / workflows,
    )


async def measure_floor(
    database_url: str,
    *,
    workflows: int = 2000,
    concurrency: int = 32,
    batch: int = 100,
    batch_workers: int = 4,
    postgres_pid: int | None = None,
    pool_size: int = 10,
) -> FloorResult:
    """Both modes on a migrated database (each after a warm-up of 50 workflows)."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=pool_size,
        max_size=pool_size,
        init=_init,
        reset=_no_reset,
        server_settings=SESSION_SETTINGS,
    )
    try:
        await _unbatched(pool, 50, concurrency)
        unbatched = await _phase(lambda: _unbatched(pool, workflows, concurrency), workflows, postgres_pid)
        await _batched(pool, 50, batch, batch_workers)
        batched = await _phase(
            lambda: _batched(pool, workflows, batch, batch_workers), workflows, postgres_pid
        )
        left = await pool.fetchval("SELECT count(*) FROM runs WHERE status <> 'Completed'")
        if left:
            raise RuntimeError(f"the floor left {left} runs not Completed: its statements no longer fit")
    finally:
        await pool.close()
    return FloorResult(
        unbatched=unbatched,
        batched=batched,
        concurrency=concurrency,
        batch=batch,
        batch_workers=batch_workers,
    )


def floor_line(result: FloorResult) -> str:
    u, b = result.unbatched, result.batched
    return (
        f"floor (asyncpg, no HTTP): unbatched {u.workflows_per_s:,.0f} wf/s"
        f" (Postgres {u.postgres_ms_per_workflow:.2f} ms/wf, {result.concurrency} workers),"
        f" batched {b.workflows_per_s:,.0f} wf/s"
        f" (Postgres {b.postgres_ms_per_workflow:.2f} ms/wf, {result.batch_workers} x {result.batch})"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.floor",
        description="The raw floor: a workflow's four named queries through asyncpg, unbatched and batched.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32, help="workers of the unbatched mode")
    parser.add_argument("--batch", type=int, default=100, help="workflows per batch in the batched mode")
    parser.add_argument("--batch-workers", type=int, default=4, help="concurrent batches in the batched mode")
    parser.add_argument("--repeat", type=int, default=1, help="trials, each on a fresh Postgres")
    options = parser.parse_args(argv)
    if min(options.workflows, options.concurrency, options.batch, options.batch_workers, options.repeat) < 1:
        parser.error("every count must be at least 1")
    return options


def main(argv: Sequence[str] | None = None) -> None:
    from benchmarks.e2e import Stack
    from benchmarks.e2e import parse_args as e2e_args

    options = parse_args(argv)
    results: list[FloorResult] = []
    for index in range(options.repeat):
        stack = Stack(e2e_args([]))
        try:
            stack.start_postgres()
            asyncio.run(stack.prepare_database())
            stack.migrate()
            result = asyncio.run(
                measure_floor(
                    stack.database_url,
                    workflows=options.workflows,
                    concurrency=options.concurrency,
                    batch=options.batch,
                    batch_workers=options.batch_workers,
                    postgres_pid=stack.pids()["postgres"],
                )
            )
        finally:
            stack.close()
        print(f"trial {index + 1}: {floor_line(result)}")
        results.append(result)
    if len(results) > 1:
        unbatched = statistics.median(r.unbatched.workflows_per_s for r in results)
        batched = statistics.median(r.batched.workflows_per_s for r in results)
        print(f"median: unbatched {unbatched:,.0f} wf/s, batched {batched:,.0f} wf/s")


if __name__ == "__main__":
    main()
