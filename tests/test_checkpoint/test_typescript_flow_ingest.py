"""Flow control at ingest for an app written with the official TypeScript SDK (checkpointing on, its
default): rateLimit, idempotency, singleton (cancel), debounce and batchEvents as its sync sends them.

The app is tests/test_checkpoint/ts_app/flow_ingest_app.js; each run returns the data of the events it got.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from stepline_gateway.clock import ManualClock

from tests.processes import typescript_app
from tests.support import RunningGateway, eventually, running_gateway

APP_DIR = Path(__file__).parent / "ts_app"
SIGNING_KEY = "signkey-prod-" + "7a" * 32
EVENT_KEY = "ts-flow-event-key"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (APP_DIR / "node_modules" / "inngest").is_dir(),
    reason="needs Node.js and `npm ci` in tests/test_checkpoint/ts_app (scripts/test runs it)",
)


@contextlib.asynccontextmanager
async def ts_flow_app(database_url: str, log: Path, clock: ManualClock) -> AsyncIterator[RunningGateway]:
    async with (
        running_gateway(
            database_url, clock=clock, dev=False, signing_key=SIGNING_KEY, event_keys=[EVENT_KEY]
        ) as gw,
        typescript_app("flow_ingest_app.js", log, GATEWAY_URL=gw.url, INNGEST_SIGNING_KEY=SIGNING_KEY) as url,
    ):
        await gw.gateway.caller.request_sync(f"{url}/api/inngest")
        functions = (await gw.http.get("/v1/functions")).json()["data"]
        assert len(functions) == 5, f"the app did not sync: {log.read_text()}"
        yield gw


async def send(gw: RunningGateway, name: str, *data: dict[str, Any]) -> list[str]:
    return await gw.send(*({"name": f"tsflow/{name}", "data": d} for d in data), key=EVENT_KEY)


async def outputs(gw: RunningGateway, function: str, count: int) -> list[Any]:
    """The outputs of the function's completed runs, once there are ``count``."""

    async def check() -> list[Any] | None:
        response = await gw.http.get("/v1/runs", params={"function": f"tsflow-{function}", "limit": 50})
        runs = [r for r in response.json()["data"] if r["status"] == "Completed"]
        return [r["output"] for r in runs] if len(runs) >= count else None

    found: list[Any] = await eventually(check, timeout=20)
    return found


async def reasons(gw: RunningGateway, event_ids: list[str]) -> list[list[str]]:
    found = []
    for event_id in event_ids:
        event = (await gw.http.get(f"/v1/events/{event_id}")).json()
        found.append([s["reason"] for s in event["skipped"]])
    return found


async def test_rate_limit_and_idempotency(database_url: str, tmp_path: Path) -> None:
    async with ts_flow_app(database_url, tmp_path / "app.log", ManualClock()) as gw:
        limited = await send(
            gw, "limited", {"user": "a", "n": 1}, {"user": "a", "n": 2}, {"user": "b", "n": 3}
        )
        once = await send(gw, "once", {"order": "x", "n": 1}, {"order": "x", "n": 2})
        assert sorted(o[0]["n"] for o in await outputs(gw, "limited", 2)) == [1, 3]
        assert [o[0]["n"] for o in await outputs(gw, "once", 1)] == [1]
        assert await reasons(gw, limited) == [[], ["rate_limited"], []]
        assert await reasons(gw, once) == [[], ["idempotency"]]


async def test_debounce_batch_and_singleton_cancel(database_url: str, tmp_path: Path) -> None:
    clock = ManualClock()
    async with ts_flow_app(database_url, tmp_path / "app.log", clock) as gw:
        for n in range(3):
            await send(gw, "debounced", {"user": "a", "n": n})
        await send(gw, "batched", *({"n": n} for n in range(4)))
        [full] = await outputs(gw, "batched", 1)
        assert [e["n"] for e in full] == [0, 1, 2]

        [first] = await send(gw, "single", {"user": "a", "n": 1})

        async def sleeping() -> bool:
            run = (await gw.runs_of(first))[0]
            return any(s["name"] == "rest" for s in (await gw.run(run["id"]))["steps"])

        await eventually(sleeping, timeout=20)
        [second] = await send(gw, "single", {"user": "a", "n": 2})
        [old] = await gw.finished_runs(first)
        assert old["status"] == "Cancelled"
        assert (await gw.runs_of(second))[0]["status"] in ("Queued", "Running")

        clock.advance(6)
        [debounced] = await outputs(gw, "debounced", 1)
        assert debounced == [{"user": "a", "n": 2}], "one run, with the last event"
        batches = sorted([e["n"] for e in o] for o in await outputs(gw, "batched", 2))
        assert batches == [[0, 1, 2], [3]]
