"""A service killed in the middle of a checkpointed call: the steps it checkpointed are not run again, the
ones it had not flushed yet are (the cost of a crash between flushes), under the strictest policy (a post
after every step) and under the SDK's default (a post once the buffered steps' run time reaches its
threshold)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support import RunningGateway, eventually, free_port, running_gateway


def start_app(gw: RunningGateway, log: Path, out: Path, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.test_checkpoint.four_steps_app", "--port", str(port)]
    command += ["--gateway", gw.url, "--log", str(log), *options]
    with out.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}/api/inngest"


async def ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def kill_at_s3(
    database_url: str, tmp_path: Path, checkpointed_before: list[str], *options: str
) -> tuple[dict[str, Any], list[str]]:
    """Start the app (``options``), kill it while s3 hangs once ``checkpointed_before`` are recorded, let a
    second process of the app finish the run: the run and the steps as they started, in order."""
    log, out = tmp_path / "steps.log", tmp_path / "app.out"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        async with running_gateway(database_url) as gw:
            first, first_url = start_app(gw, log, out, "--hang-at", "s3", *options)
            processes.append(first)
            await eventually(lambda: ready(first_url), timeout=30)
            await gw.gateway.caller.request_sync(first_url)
            [event_id] = await gw.send({"name": "killable/go", "data": {}})
            [run_ref] = await eventually(lambda: gw.runs_of(event_id))

            async def checkpointed_and_s3_running() -> bool:
                run = await gw.run(run_ref["id"])
                done = [s["name"] for s in run["steps"] if s["checkpointed"]]
                started = log.read_text().split() if log.exists() else []
                return done == checkpointed_before and started == ["s1", "s2", "s3"]

            await eventually(checkpointed_and_s3_running)
            # A second process of the app takes over the app's URL, then the first dies in the middle of s3.
            second, second_url = start_app(gw, log, out, *options)
            processes.append(second)
            await eventually(lambda: ready(second_url), timeout=30)
            # An app moves to another URL by being removed first (its started run keeps its URL meanwhile).
            removed = await gw.http.delete("/v1/apps/killable")
            assert removed.status_code < 300, removed.text
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
    return run, log.read_text().split()


async def test_every_step_policy_a_killed_service_resumes_after_its_checkpointed_steps(
    database_url: str, tmp_path: Path
) -> None:
    run, started = await kill_at_s3(database_url, tmp_path, ["s1", "s2"], "--every-step")
    # s1 and s2 ran once, in the killed process; s3 started there and ran again in the new one.
    assert started == ["s1", "s2", "s3", "s3", "s4"]
    checkpointed = {s["name"]: s["checkpointed"] for s in run["steps"]}
    assert checkpointed == {"s1": True, "s2": True, "s3": False, "s4": True}


async def test_default_policy_a_crash_between_flushes_runs_only_the_unflushed_steps_again(
    database_url: str, tmp_path: Path
) -> None:
    # s1 takes longer than the threshold: it is posted as it ends. s2 is quick: it stays buffered, and is
    # lost with the process while s3 hangs, so it runs again; s1 does not.
    run, started = await kill_at_s3(database_url, tmp_path, ["s1"], "--slow", "s1")
    assert started == ["s1", "s2", "s3", "s2", "s3", "s4"]
    checkpointed = {s["name"]: s["checkpointed"] for s in run["steps"]}
    assert checkpointed["s1"] is True
    assert {s["name"]: s["attempts"] for s in run["steps"]}["s1"] == 1
