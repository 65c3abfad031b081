"""Cron with two real gateway processes on one database: every tick starts exactly one run."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import stepline
import stepline.asgi

from tests.processes import GatewayProcesses, wait_ready
from tests.support import serve

MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: every-second}}
spec:
  app: clock
  endpoint: {{url: "{url}/api/inngest"}}
  triggers: [{{cron: "* * * * * *"}}]
"""


async def test_two_gateway_processes_fire_each_tick_once(gateway_processes: GatewayProcesses) -> None:
    ticks: list[str] = []
    client = stepline.Client("clock", dev=True)

    @client.function(id="every-second", trigger=stepline.TriggerCron(cron="* * * * * *"))
    async def every_second(ctx: stepline.Context) -> str:
        ticks.append(ctx.event.data["scheduled_at"])
        return "tick"

    async with serve(stepline.asgi.serve_app(client, [every_second])) as app_url:
        gateway_processes.manifest.write_text(MANIFEST.format(url=app_url))
        urls = [gateway_processes.start()[1] for _ in range(2)]
        for url in urls:
            await wait_ready(url)
        await asyncio.sleep(4)
        gateway_processes.stop_all()
        await asyncio.sleep(0.5)

    conn = await asyncpg.connect(gateway_processes.database_url)
    try:
        rows = await conn.fetch(
            "SELECT e.id, count(r.id) AS runs FROM events e LEFT JOIN runs r ON r.event_id = e.id"
            " WHERE e.name = 'inngest/scheduled.timer' GROUP BY e.id"
        )
    finally:
        await conn.close()
    assert len(rows) >= 3, "a tick every second for four seconds"
    assert {row["runs"] for row in rows} == {1}, "each tick started exactly one run"
    assert len(ticks) == len(set(ticks)), "no tick ran twice"
    fired = re.findall(r"cron \* \* \* \* \* \* fired (\S+) for", gateway_processes.logs())
    assert len(fired) == len(set(fired)), "the log of each tick comes from the one replica that fired it"
    # A tick whose ingest committed while its replica was being stopped may have no log line.
    assert len(rows) - 1 <= len(fired) <= len(rows)
