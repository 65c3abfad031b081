"""Killing a gateway process mid-run loses nothing: another gateway resumes after the lease expires."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stepline
import stepline.asgi

from tests.support import eventually, free_port, serve

MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: two-steps}}
spec:
  app: crash
  endpoint: {{url: "{url}/api/inngest"}}
  triggers: [{{event: crash/test}}]
"""


def stepline_command() -> list[str]:
    return [sys.executable, "-m", "stepline_cli"]


class Gateways:
    """Gateway processes started by a test, all killed at its end."""

    def __init__(self, database_url: str, manifest: Path) -> None:
        self.database_url = database_url
        self.manifest = manifest
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, port: int) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                *stepline_command(),
                "gateway",
                "--dev",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database-url",
                self.database_url,
                "-f",
                str(self.manifest),
                "--lease-s",
                "2",
                "--retry-base-s",
                "0.05",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@pytest.fixture
def gateways(database_url: str, tmp_path: Path) -> Iterator[Gateways]:
    manager = Gateways(database_url, tmp_path / "functions.yaml")
    try:
        yield manager
    finally:
        manager.stop_all()


async def wait_ready(url: str) -> None:
    async def ready() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(ready, timeout=30)


async def test_a_killed_gateway_loses_no_run_and_reruns_no_recorded_step(gateways: Gateways) -> None:
    ledger: list[str] = []
    second_started = asyncio.Event()
    gateway_killed = asyncio.Event()
    client = stepline.Client("crash", dev=True)

    @client.function(id="two-steps", trigger="crash/test")
    async def two_steps(ctx: stepline.Context) -> dict[str, Any]:
        async def first() -> str:
            ledger.append("first")
            return "one"

        async def second() -> str:
            ledger.append("second")
            if ledger.count("second") == 1:
                second_started.set()
                await gateway_killed.wait()  # the gateway making this call is killed meanwhile
            return "two"

        return {"a": await ctx.step.run("first", first), "b": await ctx.step.run("second", second)}

    async with serve(stepline.asgi.serve_app(client, [two_steps])) as service_url:
        gateways.manifest.write_text(MANIFEST.format(url=service_url))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        doomed = gateways.start(port)
        await wait_ready(url)
        async with httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/e/dev", json={"name": "crash/test", "data": {}})
            [event_id] = response.json()["ids"]
            await asyncio.wait_for(second_started.wait(), timeout=20)
            run_id = (await http.get(f"/v1/events/{event_id}")).json()["runs"][0]["id"]
            run = (await http.get(f"/v1/runs/{run_id}")).json()
            assert [(s["name"], s["status"]) for s in run["steps"]] == [("first", "Completed")]

        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        gateway_killed.set()

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        gateways.start(port)
        await wait_ready(url)
        async with httpx.AsyncClient(base_url=url) as http:

            async def finished() -> dict[str, Any] | None:
                run = (await http.get(f"/v1/runs/{run_id}")).json()
                return run if run["status"] == "Completed" else None

            run = await eventually(finished, timeout=30)
        assert run["output"] == {"a": "one", "b": "two"}
        assert ledger.count("first") == 1
        assert ledger.count("second") == 2
