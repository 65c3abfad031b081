"""Killing a gateway process mid-run loses nothing: another gateway resumes after the lease expires."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx
import stepline
import stepline.asgi

from tests.processes import GatewayProcesses, wait_ready
from tests.support import eventually, serve

MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: two-steps}}
spec:
  app: crash
  endpoint: {{url: "{url}/api/inngest"}}
  triggers: [{{event: crash/test}}]
"""


async def test_a_killed_gateway_loses_no_run_and_reruns_no_recorded_step(
    gateway_processes: GatewayProcesses,
) -> None:
    ledger: list[str] = []
    second_started = asyncio.Event()
    gateway_killed = asyncio.Event()
    # A checkpoint after every step: the first one is recorded before the second begins (the default
    # flush by work at risk is shown in tests/test_checkpoint/test_killed_service.py).
    client = stepline.Client("crash", dev=True, checkpoint=stepline.Checkpoint.every_step())

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
        gateway_processes.manifest.write_text(MANIFEST.format(url=service_url))
        doomed, url = gateway_processes.start("--lease-s", "2", "--retry-base-s", "0.05")
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

        _, url = gateway_processes.start("--lease-s", "2", "--retry-base-s", "0.05")
        await wait_ready(url)
        async with httpx.AsyncClient(base_url=url) as http:

            async def finished() -> dict[str, Any] | None:
                run = (await http.get(f"/v1/runs/{run_id}")).json()
                return run if run["status"] == "Completed" else None

            run = await eventually(finished, timeout=30)
        assert run["output"] == {"a": "one", "b": "two"}
        assert ledger.count("first") == 1
        assert ledger.count("second") == 2
