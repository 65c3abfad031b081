"""The database goes away in the middle of a load: every backend of the gateways is terminated; Postgres is
stopped and started again; Postgres is restarted. Two real gateway processes stay up throughout: every
accepted event's run completes, no recorded step runs again, and readiness follows the database."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

from tests.processes import GatewayProcesses, wait_ready
from tests.support import serve
from tests.test_faults.load import (
    MANIFEST,
    CountingService,
    Sender,
    finished_runs,
    terminate_backends,
    wait_readiness,
)
from tests.test_faults.postgres import RestartablePostgres

FLAGS = ("--lease-s", "5", "--retry-base-s", "0.05", "--retry-max-s", "0.5", "--concurrency", "16")
PER_PHASE = 20


async def test_terminated_connections_and_a_restart_lose_no_run_and_rerun_no_recorded_step(
    postgres: RestartablePostgres, tmp_path: Path
) -> None:
    database_url = await postgres.new_database()
    service = CountingService()
    gateways = GatewayProcesses(database_url, tmp_path)
    async with serve(service.app()) as service_url:
        gateways.manifest.write_text(MANIFEST.format(url=service_url))
        try:
            urls = [gateways.start(*FLAGS)[1] for _ in range(2)]
            for url in urls:
                await wait_ready(url)
            pids = [process.pid for process in gateways.processes]
            sender = Sender(urls)

            # Every connection of both gateways (pool, listener) is terminated while calls are in flight.
            load = asyncio.create_task(sender.send_many("terminated", PER_PHASE))
            await service.steps_called(20)
            terminated = await terminate_backends(postgres.uri, database_url)
            assert terminated >= 4, "each gateway had its pool and its listener connected"
            await load
            for url in urls:
                await wait_readiness(url, 200)

            # Postgres stops in the middle of a load, and starts again.
            load = asyncio.create_task(sender.send_many("restarted", PER_PHASE))
            await service.steps_called(3 * PER_PHASE + 20)
            stopped = datetime.datetime.now(datetime.UTC)
            postgres.stop()
            for url in urls:
                await wait_readiness(url, 503)
            await asyncio.sleep(0.5)  # the gateways' loops fail and back off while it is away
            postgres.start()
            back = datetime.datetime.now(datetime.UTC)
            ready, first = await asyncio.gather(
                asyncio.gather(*(wait_readiness(url, 200) for url in urls)),
                first_run_after(sender, urls[1]),
            )
            await load

            # And a plain `pg_ctl restart` in the middle of a load.
            load = asyncio.create_task(sender.send_many("pg-ctl-restart", PER_PHASE))
            await service.steps_called(6 * PER_PHASE + 20)
            postgres.restart()
            await load

            keys = list(sender.accepted)
            runs = await finished_runs(urls[0], keys)
            assert len(runs) == 3 * PER_PHASE + 1
            assert all(run["status"] == "Completed" for run in runs)
            assert service.reruns_of_recorded_steps(runs) == []
            assert [process.poll() for process in gateways.processes] == [None, None]
            assert [process.pid for process in gateways.processes] == pids
            logs = gateways.logs()
            assert "listener failed" in logs
            assert "Exception in ASGI application" not in logs
            assert "unexpected error" not in logs
            received = datetime.datetime.fromisoformat(first["event"]["received_at"])
            ended = datetime.datetime.fromisoformat(first["ended_at"])
            ready_after = max((r - back).total_seconds() for r in ready)
            print(
                f"\nrestart: Postgres away {(back - stopped).total_seconds():.2f} s; readiness back "
                f"{ready_after:.2f} s after Postgres; first event accepted "
                f"{(received - back).total_seconds():.2f} s after Postgres, its run completed "
                f"{(ended - received).total_seconds():.3f} s after that; {sender.refused} sends answered 503 "
                f"meanwhile; {service.step_calls() - 3 * len(runs)} step call(s) made again; runs lost: 0"
            )
        finally:
            gateways.stop_all()


async def first_run_after(sender: Sender, url: str) -> dict[str, Any]:
    """Send one event as soon as the gateway takes it again; answer its run once completed."""
    await sender.send("first-after-restart", via=1)
    [run] = await finished_runs(url, ["first-after-restart"], interval=0.02)
    return run
