"""The official TypeScript SDK (npm ``inngest`` v4, on Express) runs on the gateway with its default,
checkpointing on, and with checkpointing off. Each scenario ends the same way both times; the gateway's
records show which path it took: a step reported through the checkpoint API during its call is marked
``checkpointed``, and the app counts the calls it received.

The app is tests/test_checkpoint/ts_app (its dependencies come from ``npm ci`` there, which scripts/test
runs). It runs in cloud mode with a signing key: calls are signed, and the SDK reaches the sync and the
checkpoint API with its bearer token.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from stepline_gateway.clock import Clock, ManualClock

from tests.processes import typescript_app
from tests.support import RunningGateway, eventually, running_gateway

APP_DIR = Path(__file__).parent / "ts_app"
SIGNING_KEY = "signkey-prod-" + "5e" * 32
EVENT_KEY = "ts-event-key"
HOUR = datetime.timedelta(hours=1)

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (APP_DIR / "node_modules" / "inngest").is_dir(),
    reason="needs Node.js and `npm ci` in tests/test_checkpoint/ts_app (scripts/test runs it)",
)


@dataclass
class TsApp:
    gw: RunningGateway
    url: str

    async def counts(self) -> dict[str, Any]:
        """What ran in the app: {"steps": {name: runs}, "calls": {function id: calls received}}."""
        async with httpx.AsyncClient() as http:
            answer: dict[str, Any] = (await http.get(f"{self.url}/counts")).json()
            return answer

    async def start(self, name: str, data: dict[str, Any]) -> str:
        [event_id] = await self.gw.send({"name": name, "data": data}, key=EVENT_KEY)
        return event_id

    async def finished(self, event_id: str) -> dict[str, Any]:
        [run] = await self.gw.finished_runs(event_id)
        return run


@contextlib.asynccontextmanager
async def ts_app(
    database_url: str, checkpointing: bool, log: Path, *, clock: Clock | None = None
) -> AsyncIterator[TsApp]:
    """A cloud-mode gateway and the TypeScript app, synced; checkpointing is the SDK's default, or off."""
    async with (
        running_gateway(
            database_url, clock=clock, dev=False, signing_key=SIGNING_KEY, event_keys=[EVENT_KEY]
        ) as gw,
        typescript_app(
            "app.js",
            log,
            ready_path="/counts",
            GATEWAY_URL=gw.url,
            INNGEST_SIGNING_KEY=SIGNING_KEY,
            CHECKPOINTING="default" if checkpointing else "off",
        ) as url,
    ):
        await gw.gateway.caller.request_sync(f"{url}/api/inngest")
        functions = (await gw.http.get("/v1/functions")).json()["data"]
        assert len(functions) == 6, f"the app did not sync: {log.read_text()}"
        yield TsApp(gw, url)


@pytest.fixture(params=[True, False], ids=["checkpointing", "no-checkpointing"])
def checkpointing(request: pytest.FixtureRequest) -> bool:
    on: bool = request.param
    return on


def paths(run: dict[str, Any]) -> dict[str, bool]:
    """Each step run by the SDK (not sleeps or waits) -> whether it came through the checkpoint API."""
    return {s["name"]: s["checkpointed"] for s in run["steps"] if s["op"] in ("StepRun", "StepFailed")}


def steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run["steps"]}


async def step_status(app: TsApp, event_id: str, name: str) -> str | None:
    runs = await app.gw.runs_of(event_id)
    if not runs:
        return None
    return steps(await app.gw.run(runs[0]["id"])).get(name, {}).get("status")


async def test_sequential_steps_with_a_retry(database_url: str, checkpointing: bool, tmp_path: Path) -> None:
    async with ts_app(database_url, checkpointing, tmp_path / "app.log") as app:
        run = await app.finished(await app.start("ts/sequential", {"n": 20}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"a": 21, "b": "ok", "c": 42}
        counts = await app.counts()
    assert counts["steps"] == {"first": 1, "flaky": 2, "third": 1}
    assert steps(run)["flaky"]["attempts"] == 2
    if checkpointing:
        # Call 1 runs "first" (checkpointed) and "flaky", which fails: the answer is its StepError. The retry
        # targets "flaky" alone and answers with it; call 3 runs "third" (checkpointed) and the end.
        assert paths(run) == {"first": True, "flaky": False, "third": True}
        assert counts["calls"] == {"ts-sequential": 3}
    else:
        assert paths(run) == {"first": False, "flaky": False, "third": False}
        assert counts["calls"] == {"ts-sequential": 5}


async def test_parallel_steps(database_url: str, checkpointing: bool, tmp_path: Path) -> None:
    async with ts_app(database_url, checkpointing, tmp_path / "app.log") as app:
        run = await app.finished(await app.start("ts/parallel", {}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"before": 1, "one": 10, "two": 20, "after": 31}
        counts = await app.counts()
    assert counts["steps"] == {"before": 1, "one": 1, "two": 1, "after": 1}
    if checkpointing:
        # "before" is checkpointed; Promise.all ends the call with both steps planned, one call each; the
        # call after them checkpoints "after".
        assert paths(run) == {"before": True, "one": False, "two": False, "after": True}
        assert counts["calls"] == {"ts-parallel": 4}
    else:
        assert paths(run) == {"before": False, "one": False, "two": False, "after": False}
        assert counts["calls"] == {"ts-parallel": 6}


async def test_a_non_retriable_error_fails_the_run_at_once(
    database_url: str, checkpointing: bool, tmp_path: Path
) -> None:
    async with ts_app(database_url, checkpointing, tmp_path / "app.log") as app:
        run = await app.finished(await app.start("ts/hopeless", {}))
        counts = await app.counts()
    assert run["status"] == "Failed", run
    assert "cannot be processed" in run["error"]["message"]
    assert counts["steps"] == {"check": 1, "refuse": 1}
    assert steps(run)["refuse"]["status"] == "Failed"
    assert paths(run) == {"check": checkpointing, "refuse": False}


async def test_sleep(database_url: str, checkpointing: bool, tmp_path: Path) -> None:
    clock = ManualClock()
    async with ts_app(database_url, checkpointing, tmp_path / "app.log", clock=clock) as app:
        event_id = await app.start("ts/sleep", {})
        assert await eventually(lambda: step_status(app, event_id, "nap")) == "Sleeping"
        clock.advance(HOUR.total_seconds() + 1)
        run = await app.finished(event_id)
        counts = await app.counts()
    assert run["status"] == "Completed", run
    assert run["output"] == ["before", "after"]
    assert counts["steps"] == {"before-nap": 1, "after-nap": 1}
    # The sleep ends the call that checkpointed "before-nap"; the call after it checkpoints "after-nap".
    assert paths(run) == {"before-nap": checkpointing, "after-nap": checkpointing}
    assert counts["calls"] == {"ts-sleeper": 2 if checkpointing else 4}


async def test_wait_for_event(database_url: str, checkpointing: bool, tmp_path: Path) -> None:
    clock = ManualClock()
    async with ts_app(database_url, checkpointing, tmp_path / "app.log", clock=clock) as app:
        approved = await app.start("ts/order", {"order": 7})
        expired = await app.start("ts/order", {"order": 8})
        for event_id in (approved, expired):
            assert await eventually(lambda e=event_id: step_status(app, e, "approval")) == "Waiting"
        await app.start("ts/approved", {"order": 7, "by": "ada"})
        run = await app.finished(approved)
        clock.advance(HOUR.total_seconds() + 1)
        timed_out = await app.finished(expired)
        counts = await app.counts()
    assert run["output"] == {"order": 7, "outcome": "approved by ada"}
    assert timed_out["output"] == {"order": 8, "outcome": "timed out"}
    assert counts["steps"] == {"prepare": 2, "conclude": 2}
    for each in (run, timed_out):
        assert paths(each) == {"prepare": checkpointing, "conclude": checkpointing}
    assert counts["calls"] == {"ts-waiter": 4 if checkpointing else 8}


async def test_the_event_version_reaches_the_function(
    database_url: str, checkpointing: bool, tmp_path: Path
) -> None:
    async with ts_app(database_url, checkpointing, tmp_path / "app.log") as app:
        [event_id] = await app.gw.send(
            {"name": "ts/versioned", "data": {"n": 1}, "v": "2024-05-01.2"}, key=EVENT_KEY
        )
        run = await app.finished(event_id)
    assert run["status"] == "Completed", run
    assert run["output"] == {"v": "2024-05-01.2", "data": {"n": 1}}
    assert run["event"]["v"] == "2024-05-01.2"
