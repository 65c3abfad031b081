"""A gateway process killed with SIGKILL while the writes of many runs are being combined into shared
statements (group commit): the checkpoint posts of a post after every step, or the answers that carry a
run's steps with its end (run_ends.py). After a restart every run completes, and no step that was recorded
before the kill runs again or changes."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx
import pytest
import stepline
import stepline.asgi

from tests.processes import GatewayProcesses, wait_ready
from tests.support import eventually, free_port, serve

RUNS = 30
STEPS = ("s1", "s2", "s3")
MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: three}}
spec:
  app: gc
  endpoint: {{url: "{url}/api/inngest"}}
  triggers: [{{event: "gc/go"}}]
"""


async def _steps(database_url: str) -> dict[tuple[str, str], str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT run_id::text AS run, name, memo::text AS memo FROM steps WHERE memo IS NOT NULL"
        )
    finally:
        await conn.close()
    return {(row["run"], row["name"]): row["memo"] for row in rows}


async def _outputs(database_url: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id::text AS run, status, output::text AS output FROM runs")
    finally:
        await conn.close()
    return {row["run"]: row["output"] if row["status"] == "Completed" else None for row in rows}


# A post after every step; or every step buffered and sent with the run's end in the call's answer.
POLICIES = {
    "posts": stepline.Checkpoint.every_step(),
    "answers": stepline.Checkpoint(buffered_steps=None, max_at_risk=None),
}


@pytest.mark.parametrize("policy", list(POLICIES))
async def test_a_gateway_killed_between_batches_loses_no_recorded_step(
    gateway_processes: GatewayProcesses, policy: str
) -> None:
    port = free_port()
    executions: Counter[tuple[str, str]] = Counter()
    client = stepline.Client(
        "gc", gateway_url=f"http://127.0.0.1:{port}", dev=True, checkpoint=POLICIES[policy]
    )

    @client.function(id="three", trigger="gc/go")
    async def three(ctx: stepline.Context) -> list[str]:
        done = []
        for name in STEPS:

            async def step(name: str = name) -> str:
                executions[(ctx.run_id, name)] += 1
                # Runs end over half a second, so that the kill falls between their batches.
                await asyncio.sleep(0.02 * (1 + ctx.event.data["n"] % 10))
                return f"{name}-{ctx.event.data['n']}"

            done.append(await ctx.step.run(name, step))
        return done

    database_url = gateway_processes.database_url
    async with serve(stepline.asgi.serve_app(client, [three])) as app_url:
        gateway_processes.manifest.write_text(MANIFEST.format(url=app_url))
        # The restarted gateway takes the port of the killed one (the service posts there) and its calls
        # once their short leases lapse.
        same_port = ("--port", str(port), "--group-commit-wait-ms", "2", "--lease-s", "3")
        first, _ = gateway_processes.start(*same_port)
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url)
        async with httpx.AsyncClient() as http:
            sent = await http.post(
                f"{url}/e/dev", json=[{"name": "gc/go", "data": {"n": n}} for n in range(RUNS)]
            )
            assert sent.status_code == 200, sent.text

        async def some_recorded() -> bool:
            return len(await _steps(database_url)) >= RUNS // 2

        await eventually(some_recorded, timeout=30)
        first.kill()
        first.wait(timeout=10)
        before = await _steps(database_url)
        ran_before = Counter(executions)
        assert len(before) < RUNS * len(STEPS), "the kill came while steps were still being recorded"

        gateway_processes.start(*same_port)
        await wait_ready(url)

        async def all_completed() -> bool:
            outputs = await _outputs(database_url)
            return len(outputs) == RUNS and all(o is not None for o in outputs.values())

        await eventually(all_completed, timeout=60)

    after = await _steps(database_url)
    for key, memo in before.items():
        assert after[key] == memo, f"step {key} was recorded before the kill and changed after it"
        assert executions[key] == ran_before[key] == 1, f"step {key} was recorded and ran again"
    assert len(after) == RUNS * len(STEPS)
    outputs = await _outputs(database_url)
    assert sorted(outputs.values()) == sorted(f'["s1-{n}", "s2-{n}", "s3-{n}"]' for n in range(RUNS)), (
        "every run ended with its own steps' outputs"
    )
