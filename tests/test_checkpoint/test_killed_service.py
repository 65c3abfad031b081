"""A service killed in the middle of a checkpointed call: the steps it checkpointed are not run again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import RunningGateway, eventually, free_port, running_gateway


def start_app(gw: RunningGateway, log: Path, out: Path, *hang_at: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.test_checkpoint.four_steps_app", "--port", str(port)]
    command += ["--gateway", gw.url, "--log", str(log), *(("--hang-at", hang_at[0]) if hang_at else ())]
    with out.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}/api/inngest"


async def ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_killed_service_resumes_after_its_checkpointed_steps(
    database_url: str, tmp_path: Path
) -> None:
    log, out = tmp_path / "steps.log", tmp_path / "app.out"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        async with running_gateway(database_url) as gw:
            first, first_url = start_app(gw, log, out, "s3")
            processes.append(first)
            await eventually(lambda: ready(first_url), timeout=30)
            await gw.gateway.caller.request_sync(first_url)
            [event_id] = await gw.send({"name": "killable/go", "data": {}})
            [run_ref] = await eventually(lambda: gw.runs_of(event_id))

            async def two_checkpointed_and_s3_running() -> bool:
                run = await gw.run(run_ref["id"])
                done = [s["name"] for s in run["steps"] if s["checkpointed"]]
                return done == ["s1", "s2"] and log.exists() and log.read_text().split() == ["s1", "s2", "s3"]

            await eventually(two_checkpointed_and_s3_running)
            # A second process of the app takes over the app's URL, then the first dies in the middle of s3.
            second, second_url = start_app(gw, log, out)
            processes.append(second)
            await eventually(lambda: ready(second_url), timeout=30)
            await gw.gateway.caller.request_sync(second_url)
            first.kill()
            first.wait(timeout=10)
            [run] = await gw.finished_runs(event_id, timeout=30)
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)
    assert run["status"] == "Completed", (run, out.read_text())
    assert run["output"] == ["S1", "S2", "S3", "S4"]
    # s1 and s2 ran once, in the killed process; s3 started there and ran again in the new one.
    assert log.read_text().split() == ["s1", "s2", "s3", "s3", "s4"]
    checkpointed = {s["name"]: s["checkpointed"] for s in run["steps"]}
    assert checkpointed == {"s1": True, "s2": True, "s3": False, "s4": True}
