"""The chart's `helm test`: a function served from this pod runs end to end through the gateway.

It serves one function with the SDK, syncs it to the gateway at this pod's address, sends an event, waits for
the run to complete with the expected output, and unsyncs the function again. Exit 0 on success; 1 with one
line saying what failed. Settings come from the environment (see ``main``); tests/test_chart runs it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import stepline
import uvicorn
from stepline.asgi import serve_app

APP_ID = "stepline-helm-test"
EVENT_NAME = "stepline/helm-test"
ENDED = ("Completed", "Failed", "Cancelled")
# The event is sent again when no run appears this soon: a replica may not have had the new route yet.
RUN_APPEARS_S = 5.0


class TestFailed(Exception):
    """What went wrong, in one line."""


def make_client() -> tuple[stepline.Client, stepline.Function]:
    event_key = os.environ.get("STEPLINE_EVENT_KEYS", "").split(",")[0] or None
    client = stepline.Client(APP_ID, event_key=event_key)

    @client.function(id="echo", trigger=EVENT_NAME, retries=0)
    async def echo(ctx: stepline.Context) -> dict[str, Any]:
        async def greet() -> str:
            return f"hello from {APP_ID}"

        greeting = await ctx.step.run("greet", greet)
        return {"nonce": ctx.event.data.get("nonce"), "greeting": greeting}

    return client, echo


@contextlib.asynccontextmanager
async def serving(app: Any, host: str, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            raise TestFailed(f"cannot serve the test function on {host}:{port}")
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def wait_for_run(
    client: stepline.Client, api: httpx.AsyncClient, nonce: str, deadline: float
) -> dict[str, Any]:
    """Send the event (again, if no run appears) and answer its run once it has ended."""
    while time.monotonic() < deadline:
        [event_id] = await client.send({"name": EVENT_NAME, "data": {"nonce": nonce}})
        appears_by = time.monotonic() + RUN_APPEARS_S
        while time.monotonic() < min(deadline, appears_by):
            runs = (await get(api, f"/v1/events/{event_id}"))["runs"]
            if runs:
                return await wait_for_end(api, runs[0]["id"], deadline)
            await asyncio.sleep(0.2)
    raise TestFailed(f"no run started for {EVENT_NAME}: is the function routed? (GET /v1/functions)")


async def wait_for_end(api: httpx.AsyncClient, run_id: str, deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        run = await get(api, f"/v1/runs/{run_id}")
        if run["status"] in ENDED:
            return run
        await asyncio.sleep(0.2)
    raise TestFailed(f"run {run_id} did not end in time: the gateway may not reach this pod")


async def get(api: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await api.get(path)
    if response.status_code != 200:
        raise TestFailed(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer


async def main() -> None:
    """Settings: STEPLINE_GATEWAY_URL, STEPLINE_EVENT_KEYS (the first is used), STEPLINE_SIGNING_KEY,
    STEPLINE_API_TOKEN, STEPLINE_TEST_SERVE_HOST (the address the gateway calls, this pod's IP),
    STEPLINE_TEST_LISTEN (default 0.0.0.0), STEPLINE_TEST_PORT (8000), STEPLINE_TEST_TIMEOUT_S (120).
    """
    host = os.environ.get("STEPLINE_TEST_SERVE_HOST")
    if not host:
        raise TestFailed("STEPLINE_TEST_SERVE_HOST must name the address the gateway calls this pod at")
    port = int(os.environ.get("STEPLINE_TEST_PORT", "8000"))
    timeout = float(os.environ.get("STEPLINE_TEST_TIMEOUT_S", "120"))
    token = os.environ.get("STEPLINE_API_TOKEN")
    client, echo = make_client()
    serve_url = f"http://{f'[{host}]' if ':' in host else host}:{port}/api/inngest"
    nonce = uuid.uuid4().hex
    headers = {"authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    async with (
        serving(serve_app(client, [echo]), os.environ.get("STEPLINE_TEST_LISTEN", "0.0.0.0"), port),  # noqa: S104
        httpx.AsyncClient(base_url=client.config.gateway_url, headers=headers, timeout=30) as api,
    ):
        synced = await client.sync([echo], serve_url)
        if not synced.ok:
            raise TestFailed(synced.body["error"])
        try:
            run = await wait_for_run(client, api, nonce, started + timeout)
        finally:
            await client.sync([], serve_url)
    output = run["output"] if isinstance(run["output"], dict) else {}
    if run["status"] != "Completed" or output.get("nonce") != nonce:
        raise TestFailed(f"run {run['id']} ended {run['status']}: {run['error'] or run['output']}")
    print(f"run {run['id']} of {run['function']['id']} Completed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (TestFailed, stepline.SteplineError, httpx.HTTPError) as err:
        print(f"helm test failed: {err}", file=sys.stderr)
        raise SystemExit(1) from None
