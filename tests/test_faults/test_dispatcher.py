"""A dispatcher whose connection dies in the middle of ``claim_work`` comes back by itself: no zombie
replica that accepts events and never runs them. Calls the lost claim may have leased without the replica
knowing are released at once rather than after their lease."""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncpg
import httpx

from tests.processes import GatewayProcesses, wait_ready
from tests.support import eventually, serve
from tests.test_faults.load import MANIFEST, CountingService, Sender, finished_runs, readiness
from tests.test_faults.postgres import RestartablePostgres


async def test_a_claim_cut_off_by_a_terminated_connection_leaves_no_zombie(
    postgres: RestartablePostgres, tmp_path: Path
) -> None:
    database_url = await postgres.new_database()
    service = CountingService()
    gateways = GatewayProcesses(database_url, tmp_path)
    async with serve(service.app()) as service_url:
        gateways.manifest.write_text(MANIFEST.format(url=service_url))
        try:
            # New runs go through the claim (a run started where it was ingested needs none).
            _, url = gateways.start("--lease-s", "30", "--no-start-here")
            await wait_ready(url)
            sender = Sender([url])
            await sender.send("before")
            await finished_runs(url, ["before"])
            async with httpx.AsyncClient(timeout=5) as http:
                owner = (await http.get(f"{url}/readyz")).json()["replica"]

            admin = await asyncpg.connect(database_url)
            blocker = await asyncpg.connect(database_url)
            try:
                # claim_work reads the functions table: locked, the next claim waits in the middle.
                transaction = blocker.transaction()
                await transaction.start()
                await blocker.execute("LOCK TABLE functions IN ACCESS EXCLUSIVE MODE")
                await sender.send("claimed")
                await sender.send("orphan")
                claim = await eventually(lambda: _waiting_claim(admin), timeout=15)
                # As if a claim had leased this call and its answer had been lost with the connection.
                await admin.execute(
                    "UPDATE work SET lease_owner = $1, lease_token = gen_random_uuid(),"
                    " lease_expires_at = now() + interval '1 hour'"
                    " WHERE run_id = (SELECT id FROM runs WHERE event_id = 'event-orphan')",
                    owner,
                )
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", claim)
                await transaction.rollback()
            finally:
                await blocker.close()
                await admin.close()

            # Both runs complete long before the orphan's hour-long lease, and new events still run.
            await finished_runs(url, ["claimed", "orphan"], timeout=20)
            await sender.send("after")
            await finished_runs(url, ["after"], timeout=20)
            assert await readiness(url) == 200
            logs = gateways.logs()
            assert logs.count("dispatcher failed") == 1
            assert "released 1 call(s) claimed while the connection to the database broke" in logs
            assert "dispatcher is back" in logs
        finally:
            gateways.stop_all()


async def _waiting_claim(admin: asyncpg.Connection) -> int | None:
    pid: int | None = await admin.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'stepline-gateway'"
        " AND wait_event_type = 'Lock' AND query LIKE '%Leases up to%'"
    )
    return pid


async def test_a_task_that_keeps_failing_with_no_database_outage_stops_the_process(
    postgres: RestartablePostgres, tmp_path: Path
) -> None:
    database_url = await postgres.new_database()
    gateways = GatewayProcesses(database_url, tmp_path)
    gateways.manifest.write_text(MANIFEST.format(url="http://127.0.0.1:9"))
    try:
        process, url = gateways.start("--unrecoverable-exit-s", "1")
        await wait_ready(url)
        admin = await asyncpg.connect(database_url)
        try:
            # Not an outage that waiting cures: the queue's table is gone from under the gateway.
            await admin.execute("ALTER TABLE work RENAME TO work_away")
            await admin.execute("SELECT pg_notify('stepline_work', '')")
            await eventually(lambda: _exited(process), timeout=30)
        finally:
            await admin.close()
        assert process.returncode == 1
        logs = gateways.logs()
        assert "dispatcher kept failing for 1 s with errors that are not database or network ones" in logs
        assert "stepline: error: the gateway stopped: dispatcher kept failing" in logs
    finally:
        gateways.stop_all()


async def _exited(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is not None
