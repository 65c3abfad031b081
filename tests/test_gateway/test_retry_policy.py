"""``spec.retryPolicy``: retries wait as the declared backoff says (on the test clock), and a call that takes
longer than the policy's timeout is cut off, counted as a failed attempt and retried.

The functions are published from a ``Function`` manifest (as ``stepline dev -f`` reads it) and served by
our SDK; the waits are read from the work row's due time against the gateway's clock.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

import fastapi
import httpx
import inngest
import inngest.fast_api
import pytest
import stepline
import stepline.asgi
from stepline.flow import RetryPolicy
from stepline_gateway.backoff import Backoff
from stepline_gateway.clock import ManualClock
from stepline_gateway.registry import load_manifests
from stepline_gateway.routing import Function

from tests.processes import typescript_app
from tests.support import eventually, running_gateway, serve
from tests.test_gateway.test_retries import due_in

TS_APP = Path(__file__).parents[1] / "test_checkpoint" / "ts_app"


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("Exponential", [2, 4, 8, 16, 30, 30]),
        ("Linear", [2, 4, 6, 8, 10, 12]),
        ("Constant", [2, 2, 2, 2, 2, 2]),
    ],
)
def test_each_backoff_gives_its_delays_capped_by_the_maximum(backoff: str, expected: list[float]) -> None:
    policy = RetryPolicy.model_validate(
        {"backoff": backoff, "initialDelay": "2s", "maxDelay": "30s", "jitterPercent": 0}
    )
    assert [Backoff().delay(attempt, policy=policy) for attempt in range(6)] == expected


def test_jitter_takes_up_to_its_share_off_each_delay() -> None:
    policy = RetryPolicy.model_validate({"backoff": "Constant", "initialDelay": "10s", "jitterPercent": 40})
    rng = random.Random(3)
    delays = [Backoff().delay(0, policy=policy, rng=rng) for _ in range(300)]
    assert all(6 <= d <= 10 for d in delays), (min(delays), max(delays))
    assert max(delays) - min(delays) > 3, "jitter spreads the delays"


def manifest(tmp_path: Path, url: str, name: str, retries: int, policy: str) -> Function:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        "apiVersion: stepline.dev/v1alpha1\nkind: Function\n"
        f"metadata: {{name: {name}}}\n"
        f"spec:\n  app: policy\n  endpoint: {{url: '{url}'}}\n  triggers: [{{event: policy/{name}}}]\n"
        f"  retries: {retries}\n  retryPolicy: {policy}\n"
    )
    [function] = load_manifests([path])
    return function


@pytest.mark.parametrize(
    ("backoff", "waits"),
    [("Exponential", [10, 20, 40]), ("Linear", [10, 20, 30]), ("Constant", [10, 10, 10])],
)
async def test_retries_wait_as_the_policy_says_on_the_clock(
    database_url: str, tmp_path: Path, backoff: str, waits: list[float]
) -> None:
    clock = ManualClock()
    attempts: list[int] = []
    client = stepline.Client("policy", dev=True)

    @client.function(id="flaky", trigger="policy/flaky", retries=3)
    async def flaky(ctx: stepline.Context) -> str:
        async def call() -> str:
            attempts.append(ctx.attempt)
            if len(attempts) <= 3:
                raise RuntimeError(f"failure {len(attempts)}")
            return "done"

        return await ctx.step.run("call", call)

    policy = f"{{backoff: {backoff}, initialDelay: 10s, maxDelay: 1h, jitterPercent: 0}}"
    # The gateway's own backoff is far off, so that a wait that followed it could not pass.
    async with (
        serve(stepline.asgi.serve_app(client, [flaky])) as app_url,
        running_gateway(database_url, clock=clock, retry_base_s=500, retry_max_s=500) as gw,
    ):
        await gw.publish(manifest(tmp_path, f"{app_url}/api/inngest", "flaky", 3, policy))
        [event_id] = await gw.send({"name": "policy/flaky", "data": {}})
        seen = []
        for count, expected in enumerate(waits, start=1):

            async def retry_due(count: int = count) -> float | None:
                return await due_in(database_url, clock) if len(attempts) == count else None

            wait = await eventually(retry_due)
            # The wait runs from the database's clock, which went on since the retry was recorded.
            assert expected - 2 <= wait <= expected, (backoff, count, wait)
            seen.append(round(wait))
            await asyncio.sleep(0.2)
            assert len(attempts) == count, "nothing is retried before its time"
            clock.advance(wait)
        [run] = await gw.finished_runs(event_id)
    assert run["status"] == "Completed"
    assert attempts == [0, 1, 2, 3]
    assert run["steps"][0]["attempts"] == 4


async def test_a_call_past_the_policy_timeout_is_cut_off_and_retried(
    database_url: str, tmp_path: Path
) -> None:
    started: list[int] = []
    finished: list[int] = []
    client = stepline.Client("policy", dev=True)

    @client.function(id="slow", trigger="policy/slow", retries=2)
    async def slow(ctx: stepline.Context) -> str:
        started.append(ctx.attempt)
        if ctx.attempt == 0:
            await asyncio.sleep(60)  # far longer than the run is waited for: only a cut-off ends it
        finished.append(ctx.attempt)
        return f"answered on attempt {ctx.attempt}"

    policy = "{backoff: Constant, initialDelay: 100ms, jitterPercent: 0, timeout: 1s}"
    # The gateway's own call timeout is long: only the policy's can cut the first call off.
    async with (
        serve(stepline.asgi.serve_app(client, [slow])) as app_url,
        running_gateway(database_url, call_timeout_s=120) as gw,
    ):
        await gw.publish(manifest(tmp_path, f"{app_url}/api/inngest", "slow", 2, policy))
        [event_id] = await gw.send({"name": "policy/slow", "data": {}})
        [run] = await gw.finished_runs(event_id, timeout=20)
    assert run["status"] == "Completed", run
    assert run["output"] == "answered on attempt 1"
    assert started == [0, 1]
    assert finished == [1]


async def test_without_a_policy_the_gateway_backoff_applies(database_url: str, tmp_path: Path) -> None:
    clock = ManualClock()
    attempts: list[int] = []
    client = stepline.Client("policy", dev=True)

    @client.function(id="plain", trigger="policy/plain", retries=1)
    async def plain(ctx: stepline.Context) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return "done"

    async with (
        serve(stepline.asgi.serve_app(client, [plain])) as app_url,
        running_gateway(database_url, clock=clock, retry_base_s=300, retry_max_s=300) as gw,
    ):
        path = tmp_path / "plain.yaml"
        path.write_text(
            "apiVersion: stepline.dev/v1alpha1\nkind: Function\nmetadata: {name: plain}\n"
            f"spec:\n  app: policy\n  endpoint: {{url: '{app_url}/api/inngest'}}\n"
            "  triggers: [{event: policy/plain}]\n  retries: 1\n"
        )
        [function] = load_manifests([path])
        assert function.retry_policy is None
        await gw.publish(function)
        [event_id] = await gw.send({"name": "policy/plain", "data": {}})
        wait = await eventually(lambda: due_in(database_url, clock))
        assert 148 <= wait <= 300  # the gateway's 300 s, half of it jitter
        clock.advance(wait)
        [run] = await gw.finished_runs(event_id)
    assert run["status"] == "Completed"


async def test_a_function_of_the_official_python_sdk_gets_its_policy_from_a_manifest(
    database_url: str, tmp_path: Path
) -> None:
    """The Inngest SDKs send no retry policy; a Function manifest gives one to a function they serve."""
    client = inngest.Inngest(app_id="pypolicy", is_production=False)
    started: list[int] = []

    @client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="policy/pyslow"), retries=2)
    async def slow(ctx: inngest.Context) -> str:
        async def work() -> str:
            started.append(ctx.attempt)
            if ctx.attempt == 0:
                await asyncio.sleep(60)
            return f"attempt {ctx.attempt}"

        return await ctx.step.run("work", work)

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [slow])
    policy = "{backoff: Constant, initialDelay: 100ms, jitterPercent: 0, timeout: 1s}"
    async with serve(app) as app_url, running_gateway(database_url, call_timeout_s=120) as gw:
        path = tmp_path / "pyslow.yaml"
        path.write_text(
            "apiVersion: stepline.dev/v1alpha1\nkind: Function\nmetadata: {name: slow}\n"
            f"spec:\n  app: pypolicy\n  endpoint: {{url: '{app_url}/api/inngest'}}\n"
            f"  triggers: [{{event: policy/pyslow}}]\n  retries: 2\n  retryPolicy: {policy}\n"
        )
        await gw.publish(*load_manifests([path]))
        [event_id] = await gw.send({"name": "policy/pyslow", "data": {}})
        [run] = await gw.finished_runs(event_id, timeout=20)
    assert run["status"] == "Completed", run
    assert run["output"] == "attempt 1"
    assert started == [0, 1]
    [step] = run["steps"]
    assert step["attempts"] == 2


@pytest.mark.skipif(
    shutil.which("node") is None or not (TS_APP / "node_modules" / "inngest").is_dir(),
    reason="needs Node.js and `npm ci` in tests/test_checkpoint/ts_app (scripts/test runs it)",
)
async def test_a_function_of_the_typescript_sdk_checkpointing_is_cut_off_and_retried(
    database_url: str, tmp_path: Path
) -> None:
    """The TypeScript SDK runs steps inside the call and checkpoints them (its default): the call that
    hangs in its second step is cut off at the policy's timeout; the first step, checkpointed before, is
    kept, and the retry runs the second one only."""
    async with running_gateway(database_url, call_timeout_s=120) as gw:
        log = tmp_path / "app.log"
        async with typescript_app("policy_app.js", log, GATEWAY_URL=gw.url) as url:
            policy = "{backoff: Constant, initialDelay: 100ms, jitterPercent: 0, timeout: 2s}"
            await gw.publish(manifest_for(tmp_path, "tspolicy", "slow", f"{url}/api/inngest", policy))
            [event_id] = await gw.send({"name": "tspolicy/slow", "data": {}})
            [run] = await gw.finished_runs(event_id, timeout=30)
            async with httpx.AsyncClient() as http:
                started = (await http.get(f"{url}/started")).json()
    assert run["status"] == "Completed", (run, log.read_text())
    assert run["output"] == "before, attempt 1"
    # "before" was checkpointed during the call that was cut off, and is not run again.
    assert started == {"started": [0, 1], "ranBefore": 1}
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["before"]["checkpointed"] is True
    assert (steps["work"]["output"], steps["work"]["attempts"]) == ("attempt 1", 2)


def manifest_for(tmp_path: Path, app: str, function_id: str, url: str, policy: str) -> Function:
    path = tmp_path / f"{app}-{function_id}.yaml"
    path.write_text(
        f"apiVersion: stepline.dev/v1alpha1\nkind: Function\nmetadata: {{name: {function_id}}}\n"
        f"spec:\n  app: {app}\n  endpoint: {{url: '{url}'}}\n"
        f"  triggers: [{{event: {app}/{function_id}}}]\n  retries: 2\n  retryPolicy: {policy}\n"
    )
    [function] = load_manifests([path])
    return function
