"""Flow control at ingest across two gateway processes sharing one database, with the functions declared in
a Function manifest: events sent to both replicas at once never start more runs than the settings allow
(a burst of events of one debounce key, shorter than its period, starts one run)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import stepline
import stepline.asgi

from tests.processes import GatewayProcesses, wait_ready
from tests.support import eventually, serve

EVENTS = 24

MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: limited}}
spec:
  app: rep
  functionId: limited
  endpoint: {{url: "{url}"}}
  triggers: [{{event: rep/limited}}]
  rateLimit: {{limit: 3, period: 1h, key: event.data.user}}
---
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: once}}
spec:
  app: rep
  functionId: once
  endpoint: {{url: "{url}"}}
  triggers: [{{event: rep/once}}]
  idempotency: event.data.order
---
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: single}}
spec:
  app: rep
  functionId: single
  endpoint: {{url: "{url}"}}
  triggers: [{{event: rep/single}}]
  singleton: {{key: event.data.user, mode: skip}}
---
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: batched}}
spec:
  app: rep
  functionId: batched
  endpoint: {{url: "{url}"}}
  triggers: [{{event: rep/batched}}]
  batchEvents: {{maxSize: 6, timeout: 60s}}
---
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: debounced}}
spec:
  app: rep
  functionId: debounced
  endpoint: {{url: "{url}"}}
  triggers: [{{event: rep/debounced}}]
  debounce: {{period: 3s, key: event.data.user}}
"""


async def test_two_replicas_enforce_the_limits_once(gateway_processes: GatewayProcesses) -> None:
    seen: Counter[str] = Counter()
    batches: list[list[int]] = []
    release = asyncio.Event()
    client = stepline.Client("rep", dev=True)

    @client.function(id="limited", trigger="rep/limited")
    async def limited(ctx: stepline.Context) -> None:
        seen["limited"] += 1

    @client.function(id="once", trigger="rep/once")
    async def once(ctx: stepline.Context) -> None:
        seen["once"] += 1

    @client.function(id="single", trigger="rep/single")
    async def single(ctx: stepline.Context) -> None:
        seen["single"] += 1
        await release.wait()

    @client.function(id="debounced", trigger="rep/debounced")
    async def debounced(ctx: stepline.Context) -> None:
        seen["debounced"] += 1

    @client.function(id="batched", trigger="rep/batched")
    async def batched(ctx: stepline.Context) -> None:
        batches.append([e.data["n"] for e in ctx.events])

    async with serve(stepline.asgi.serve_app(client, [limited, once, single, batched, debounced])) as app_url:
        gateway_processes.manifest.write_text(MANIFEST.format(url=f"{app_url}/api/inngest"))
        urls = [gateway_processes.start()[1] for _ in range(2)]
        for url in urls:
            await wait_ready(url)

        async with httpx.AsyncClient(timeout=20) as http:

            async def send(n: int, name: str, data: dict[str, Any]) -> None:
                event = {"name": f"rep/{name}", "data": {**data, "n": n}}
                response = await http.post(f"{urls[n % 2]}/e/any", json=event)
                assert response.status_code == 200, response.text

            await asyncio.gather(
                *(send(n, "limited", {"user": "a"}) for n in range(EVENTS)),
                *(send(n, "once", {"order": "o-1"}) for n in range(EVENTS)),
                *(send(n, "single", {"user": "a"}) for n in range(EVENTS)),
                *(send(n, "batched", {}) for n in range(EVENTS)),
                *(send(n, "debounced", {"user": "a"}) for n in range(EVENTS)),
            )

            wanted = {"limited": 3, "once": 1, "single": 1, "debounced": 1}
            await eventually(lambda: _at_least(seen, wanted), timeout=30)
            await eventually(lambda: _batched(batches, EVENTS // 6), timeout=30)
            await asyncio.sleep(1.0)
            assert seen == wanted, gateway_processes.logs()
            assert len(batches) == EVENTS // 6
            assert all(len(b) == 6 for b in batches)
            assert sorted(n for b in batches for n in b) == list(range(EVENTS)), "each event in one batch"

            metrics = (await http.get(f"{urls[0]}/metrics")).text + (
                await http.get(f"{urls[1]}/metrics")
            ).text
            skipped = _skipped(metrics)
            assert skipped == {"rate_limited": EVENTS - 3, "idempotency": EVENTS - 1, "singleton": EVENTS - 1}
            release.set()


async def _at_least(seen: Counter[str], wanted: dict[str, int]) -> bool:
    return all(seen[name] >= n for name, n in wanted.items())


async def _batched(batches: list[list[int]], n: int) -> bool:
    return len(batches) >= n


def _skipped(metrics: str) -> dict[str, float]:
    """stepline_events_skipped_total by reason, added up over the replicas' texts."""
    totals: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("stepline_events_skipped_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            totals[reason] = totals.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals
