"""What the fault tests share: a service that counts every execution of every step, a sender that keeps
sending until the gateway accepts, and the checks that nothing accepted was lost and nothing recorded ran
again."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import stepline
import stepline.asgi

from tests.support import eventually

APP = "faults"
EVENT = "faults/go"
STEPS = ("a", "b", "c")

MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: steps}}
spec:
  app: faults
  endpoint: {{url: "{url}/api/inngest"}}
  triggers: [{{event: faults/go}}]
  retries: 20
"""


@dataclass
class CountingService:
    """A function of three steps. Each execution of a step returns a token of its own, so that the token
    recorded tells which execution counted, and each (run, step, attempt) call is counted."""

    step_s: float = 0.01
    executions: defaultdict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    calls: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    first_call_at: dict[str, float] = field(default_factory=dict)

    def app(self) -> Any:
        client = stepline.Client(APP, dev=True, checkpoint=False)

        @client.function(id="steps", trigger=EVENT, retries=20)
        async def steps(ctx: stepline.Context) -> dict[str, str]:
            self.first_call_at.setdefault(str(ctx.event.data["key"]), time.monotonic())

            async def step(name: str) -> str:
                self.calls[(ctx.run_id, name, ctx.attempt)] += 1
                token = uuid.uuid4().hex
                self.executions[(ctx.run_id, name)].append(token)
                await asyncio.sleep(self.step_s)
                return token

            return {name: await ctx.step.run(name, step, name) for name in STEPS}

        return stepline.asgi.serve_app(client, [steps])

    def step_calls(self) -> int:
        return sum(self.calls.values())

    async def steps_called(self, count: int) -> None:
        await eventually(lambda: _true(self.step_calls() >= count), timeout=30, interval=0.01)

    def reruns_of_recorded_steps(self, runs: list[dict[str, Any]]) -> list[str]:
        """Steps executed again after the execution whose output was recorded (must be none)."""
        found = []
        for run in runs:
            for step in run["steps"]:
                tokens = self.executions[(run["id"], step["name"])]
                if step["output"] not in tokens:
                    found.append(f"{run['id']}/{step['name']}: recorded output from no execution")
                elif tokens.index(step["output"]) != len(tokens) - 1:
                    found.append(
                        f"{run['id']}/{step['name']}: {len(tokens)} executions, recorded one not last"
                    )
        return found


async def _true(value: bool) -> bool:
    return value


@dataclass
class Sender:
    """Sends events the way a client that wants them accepted does: each until a 200 (a 503 while the
    database is away is sent again, with the same id, so nothing is stored twice)."""

    urls: list[str]
    accepted: dict[str, float] = field(default_factory=dict)
    refused: int = 0

    async def send(self, key: str, *, via: int = 0) -> str:
        event = {"name": EVENT, "id": f"event-{key}", "data": {"key": key}}
        sent_at = time.monotonic()
        async with httpx.AsyncClient(base_url=self.urls[via % len(self.urls)], timeout=10) as http:
            while True:
                try:
                    response = await http.post("/e/dev", json=event)
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200:
                    self.accepted[key] = sent_at
                    return key
                assert response is None or response.status_code == 503, response.text
                self.refused += 1
                await asyncio.sleep(0.05)

    async def send_many(self, prefix: str, count: int, *, pause_s: float = 0.01) -> None:
        for n in range(count):
            await self.send(f"{prefix}-{n}", via=n)
            await asyncio.sleep(pause_s)


async def finished_runs(
    url: str, keys: list[str], *, timeout: float = 60, interval: float = 0.2
) -> list[dict[str, Any]]:
    """Wait until the run of each event is Completed; answer the runs in full."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:

        async def runs_of(key: str) -> list[dict[str, Any]]:
            response = await http.get(f"/v1/events/event-{key}")
            assert response.status_code == 200, response.text
            runs: list[dict[str, Any]] = response.json()["runs"]
            return runs

        async def all_completed() -> bool:
            for key in keys:
                runs = await runs_of(key)
                if len(runs) != 1 or runs[0]["status"] != "Completed":
                    return False
            return True

        await eventually(all_completed, timeout=timeout, interval=interval)
        return [(await http.get(f"/v1/runs/{(await runs_of(key))[0]['id']}")).json() for key in keys]


async def readiness(url: str) -> int:
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(f"{url}/readyz")).status_code
    except httpx.HTTPError:
        return 0


async def wait_readiness(url: str, status: int, *, timeout: float = 30) -> datetime.datetime:
    """Wait until ``GET /readyz`` answers ``status``; answer when it did."""
    await eventually(lambda: _is(readiness(url), status), timeout=timeout, interval=0.02)
    return datetime.datetime.now(datetime.UTC)


async def _is(answer: Any, status: int) -> bool:
    return bool(await answer == status)


async def terminate_backends(admin_uri: str, database_url: str, application: str = "stepline-gateway") -> int:
    """``pg_terminate_backend`` every connection of ``application`` to the database; answer how many."""
    database = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin_uri)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name LIKE $2",
            database,
            f"{application}%",
        )
    finally:
        await conn.close()
    return len(rows)
