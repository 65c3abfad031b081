"""Two gateway replicas whose clocks differ by 60 seconds share a load: leases are judged on the database's
clock, so neither takes the other's calls, and no run waits for the skew."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.processes import GatewayProcesses, wait_ready
from tests.support import serve
from tests.test_faults.load import MANIFEST, CountingService, Sender, finished_runs
from tests.test_faults.postgres import RestartablePostgres

SKEW_S = 60.0
RUNS = 40
# Calls that take a while, so that each replica claims while the other holds leases.
FLAGS = ("--lease-s", "10", "--concurrency", "4")


async def test_replicas_with_skewed_clocks_never_take_each_others_calls(
    postgres: RestartablePostgres, tmp_path: Path
) -> None:
    database_url = await postgres.new_database()
    service = CountingService(step_s=0.05)
    gateways = GatewayProcesses(database_url, tmp_path)
    async with serve(service.app()) as service_url:
        gateways.manifest.write_text(MANIFEST.format(url=service_url))
        try:
            _, on_time = gateways.start(*FLAGS)
            _, ahead = gateways.start(*FLAGS, "--clock-offset-s", str(SKEW_S))
            for url in (on_time, ahead):
                await wait_ready(url)
            sender = Sender([on_time, ahead])
            await asyncio.gather(*(sender.send(f"skew-{n}", via=n) for n in range(RUNS)))
            runs = await finished_runs(on_time, list(sender.accepted), timeout=SKEW_S / 2)

            assert len(runs) == RUNS
            assert all(run["status"] == "Completed" for run in runs)
            # Each call was made once: no replica took a call whose lease the other held.
            assert set(service.calls.values()) == {1}
            assert len(service.calls) == 3 * RUNS
            assert all(step["attempts"] == 1 for run in runs for step in run["steps"])
            assert service.reruns_of_recorded_steps(runs) == []
            # Both took part, and no run waited for the skew, whichever replica took its event.
            calls = [await _calls(url) for url in (on_time, ahead)]
            assert all(count > 0 for count in calls), calls
            waits = [service.first_call_at[key] - sent for key, sent in sender.accepted.items()]
            assert max(waits) < SKEW_S / 2, max(waits)
            longest = max(waits)
            print(f"\nskew: {RUNS} runs, calls per replica {calls}, longest first-call wait {longest:.2f} s")
        finally:
            gateways.stop_all()


async def _calls(url: str) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        metrics = (await http.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("stepline_calls_total{")
    )
