"""A run starts where it was ingested (ingest.py, dispatcher.py): the gateway that commits an event leases the
new run to itself in the ingest statement and makes its first call after COMMIT. Killed with SIGKILL while
making that call, another replica takes the run over once the lease lapses, woken by the ``leased``
notification rather than its idle recheck; a function with flow control at the claim is left to the claim."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx
import stepline
import stepline.asgi

from tests.processes import GatewayProcesses, wait_ready
from tests.support import eventually, serve

MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: once}}
spec:
  app: sh
  endpoint: {{url: "{url}/api/inngest"}}
  triggers: [{{event: "sh/go"}}]
---
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: gated}}
spec:
  app: sh
  endpoint: {{url: "{url}/api/inngest"}}
  triggers: [{{event: "sh/gated"}}]
  concurrency: [{{limit: 1}}]
"""


async def _runs(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(
            """SELECT r.function_id, r.status, r.output::text AS output,
                      r.started_at = r.created_at AS at_ingest
               FROM runs r WHERE r.function_id LIKE '%once' OR r.function_id LIKE '%gated'
               ORDER BY r.created_at"""
        )
    finally:
        await conn.close()


async def test_a_run_started_where_it_was_ingested_is_taken_over_when_that_gateway_dies(
    gateway_processes: GatewayProcesses,
) -> None:
    calls: Counter[str] = Counter()
    first_call = asyncio.Event()
    client = stepline.Client("sh", gateway_url="http://127.0.0.1:9", dev=True)

    @client.function(id="once", trigger="sh/go")
    async def once(ctx: stepline.Context) -> str:
        async def step() -> str:
            calls["once"] += 1
            if calls["once"] == 1:
                first_call.set()
                await asyncio.sleep(3600)  # the gateway making this call dies meanwhile
            return "done"

        return await ctx.step.run("only", step)

    @client.function(id="gated", trigger="sh/gated")
    async def gated(ctx: stepline.Context) -> str:
        return "gated"

    database_url = gateway_processes.database_url
    async with serve(stepline.asgi.serve_app(client, [once, gated])) as app_url:
        gateway_processes.manifest.write_text(MANIFEST.format(url=app_url))
        first, first_url = gateway_processes.start("--lease-s", "2")
        _, second_url = gateway_processes.start("--lease-s", "2")
        await wait_ready(first_url)
        await wait_ready(second_url)
        async with httpx.AsyncClient() as http:
            # Alone, so that no NOTIFY of unleased work wakes the other replica meanwhile.
            sent = await http.post(f"{first_url}/e/dev", json={"name": "sh/go", "data": {}})
            assert sent.status_code == 200, sent.text
        await asyncio.wait_for(first_call.wait(), timeout=15)
        # Leased in the ingest statement: the run was Running from the moment it was created.
        [started] = [row for row in await _runs(database_url) if row["function_id"].endswith("once")]
        assert (started["status"], started["at_ingest"]) == ("Running", True)
        first.kill()
        first.wait(timeout=10)

        async def completed() -> bool:
            rows = await _runs(database_url)
            return len(rows) == expected and all(row["status"] == "Completed" for row in rows)

        # Well within the idle recheck (30 s): the other replica looked again a lease after the ingest.
        expected = 1
        await eventually(completed, timeout=20)
        async with httpx.AsyncClient() as http:
            sent = await http.post(f"{second_url}/e/dev", json=[{"name": "sh/gated", "data": {}}] * 3)
            assert sent.status_code == 200, sent.text
        expected = 4
        await eventually(completed, timeout=20)
    rows = await _runs(database_url)
    assert calls["once"] == 2
    assert [row["output"] for row in rows if row["function_id"].endswith("once")] == ['"done"']
    # Runs under a concurrency limit went through the claim (which counts their slots), not the ingest.
    assert [row["at_ingest"] for row in rows if row["function_id"].endswith("gated")] == [False] * 3
