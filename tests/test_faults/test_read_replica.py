"""Reads through a replica: the dashboard's and the /v1 list and detail routes read from
``STEPLINE_READ_DATABASE_URL`` (a streaming-replication standby here), everything else writes and claims on
the primary; what the primary has is read back once replicated, and a replica that is away makes those
reads fail and the gateway unready, while ingest and execution go on. And the credentials of a URL without
any come from PGUSER (and PGPASSWORD), as with the chart's CloudNativePG Cluster.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from stepline_store.pool import connect

from tests.support import RunningGateway, eventually, route, running_gateway, serve
from tests.test_faults.load import APP, EVENT, CountingService
from tests.test_faults.postgres import RestartablePostgres


@pytest.fixture(scope="module")
def replica(postgres: RestartablePostgres, faults_folder: Path) -> Iterator[RestartablePostgres]:
    folder = Path(tempfile.mkdtemp(prefix="replica-", dir=faults_folder))
    folder.chmod(0o711)
    standby = postgres.standby(folder)
    try:
        yield standby
    finally:
        standby.cleanup()


async def _replayed(primary: str, standby: str) -> bool:
    """Whether the standby has replayed everything the primary had written when asked."""
    conn = await asyncpg.connect(primary)
    try:
        written = await conn.fetchval("SELECT pg_current_wal_lsn()")
    finally:
        await conn.close()
    conn = await asyncpg.connect(standby)
    try:
        return bool(await conn.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", written))
    finally:
        await conn.close()


async def test_reads_come_from_the_replica_once_replicated(
    postgres: RestartablePostgres, replica: RestartablePostgres
) -> None:
    database_url = await postgres.new_database()
    name = database_url.rsplit("/", 1)[1]
    replica_url = replica.database_uri(name)
    await eventually(lambda: _replayed(postgres.uri, replica.uri))
    async with (
        serve(CountingService().app()) as service,
        running_gateway(database_url, read_database_url=replica_url) as gw,
    ):
        await gw.publish(route(f"{APP}-steps", f"{service}/api/inngest", {"event": EVENT}))
        [event_id] = await gw.send({"name": EVENT, "data": {"key": "replica"}})
        # finished_runs reads /v1/events and /v1/runs: through the replica, once it has replayed the run.
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed"
        standby = await asyncpg.connect(replica_url)
        try:
            assert await standby.fetchval("SELECT pg_is_in_recovery()")
            readers = await standby.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stepline-gateway reads'"
            )
        finally:
            await standby.close()
        assert readers >= 1, "the gateway's reads went to the replica"

        replica.stop()
        try:
            ready = await gw.http.get("/readyz")
            assert ready.status_code == 503
            assert any(p.startswith("read replica unreachable") for p in ready.json()["problems"])
            assert (await gw.http.get("/v1/runs")).status_code == 503
            # Ingest and execution are the primary's: they go on.
            [later] = await gw.send({"name": EVENT, "data": {"key": "primary"}})
            await eventually(lambda: _completed_on_primary(database_url, later))
        finally:
            replica.start()
        await eventually(lambda: _ready(gw))


async def _completed_on_primary(database_url: str, event_id: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.fetchval("SELECT status FROM runs WHERE event_id = $1", event_id)
    finally:
        await conn.close()
    return status == "Completed"


async def _ready(gw: RunningGateway) -> bool:
    response = await gw.http.get("/readyz")
    return response.status_code == 200


async def test_a_url_without_credentials_takes_them_from_pguser(
    postgres: RestartablePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await asyncpg.connect(postgres.uri)
    try:
        await admin.execute("DROP ROLE IF EXISTS stepline_app")
        await admin.execute("CREATE ROLE stepline_app LOGIN PASSWORD 'from-the-secret'")
    finally:
        await admin.close()
    monkeypatch.setenv("PGUSER", "stepline_app")
    monkeypatch.setenv("PGPASSWORD", "from-the-secret")
    conn = await connect(f"postgresql://127.0.0.1:{postgres.port}/postgres")
    try:
        assert await conn.fetchval("SELECT current_user") == "stepline_app"
    finally:
        await conn.close()
