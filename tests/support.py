"""Helpers shared by the tests: real HTTP servers on loopback, waiting for a condition, a gateway."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from stepline_gateway.api import create_app
from stepline_gateway.clock import Clock
from stepline_gateway.registry import MANIFEST_SOURCE
from stepline_gateway.routing import Function
from stepline_gateway.service import Gateway
from stepline_gateway.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on loopback in this event loop; yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="auto", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, interval: float = 0.05
) -> Any:
    """Call ``check`` until it returns something truthy; fail with its last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")


def route(
    function_id: str,
    url: str,
    *triggers: dict[str, Any],
    retries: int = 2,
    paused: bool = False,
) -> Function:
    """A function as a manifest would publish it: ``<app>-<name>`` served at ``url``."""
    app_id, _, name = function_id.partition("-")
    return Function(
        id=function_id,
        app_id=app_id,
        name=name,
        url=url,
        triggers=list(triggers),
        retries=retries,
        paused=paused,
        source=MANIFEST_SOURCE,
    )


@dataclass
class RunningGateway:
    url: str
    gateway: Gateway
    http: httpx.AsyncClient

    async def publish(self, *functions: Function) -> None:
        """Publish functions (replacing those from manifests) and route them here at once."""
        await self.gateway.registry.publish(list(functions), replace_source=MANIFEST_SOURCE)
        await self.gateway.reload_routes()

    async def send(self, *events: dict[str, Any], key: str = "test-key") -> list[str]:
        response = await self.http.post(f"/e/{key}", json=list(events))
        assert response.status_code == 200, response.text
        ids: list[str] = response.json()["ids"]
        return ids

    async def run(self, run_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        return run

    async def runs_of(self, event_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/v1/events/{event_id}")
        assert response.status_code == 200, response.text
        runs: list[dict[str, Any]] = response.json()["runs"]
        return runs

    async def finished_runs(
        self, event_id: str, count: int = 1, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Wait until the event has ``count`` runs that all ended; answer them in full."""

        async def check() -> list[dict[str, Any]] | None:
            runs = await self.runs_of(event_id)
            if len(runs) >= count and all(r["status"] in ("Completed", "Failed", "Cancelled") for r in runs):
                return [await self.run(r["id"]) for r in runs]
            return None

        result: list[dict[str, Any]] = await eventually(check, timeout=timeout)
        return result


# Outside dev mode the /v1 API needs a token: ``running_gateway`` sets this one, and its client sends it.
API_TOKEN = "test-api-token"


def gateway_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "dev": True,
        "api_token": API_TOKEN,
        "retry_base_s": 0.05,
        "retry_max_s": 0.2,
        "lease_s": 5.0,
        "shutdown_grace_s": 2.0,
        **overrides,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_gateway(
    database_url: str, *, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings(database_url, **overrides)
    gateway = Gateway(settings, clock=clock)
    headers = {"authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    async with (
        serve(create_app(gateway)) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as http,
    ):
        yield RunningGateway(url=url, gateway=gateway, http=http)


@contextlib.asynccontextmanager
async def in_process_gateway(
    database_url: str, *, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[RunningGateway]:
    """A started gateway served in this process through ``httpx.ASGITransport``: no sockets, so that
    thousands of requests take seconds. An error inside the app answers 500 (it is not raised here)."""
    settings = gateway_settings(database_url, **overrides)
    gateway = Gateway(settings, clock=clock)
    headers = {"authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=create_app(gateway), raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=10, headers=headers
        ) as http:
            yield RunningGateway(url="http://gateway", gateway=gateway, http=http)
    finally:
        await gateway.stop()


_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")


async def tables_with_rows(conn: Any) -> set[str]:
    """The tables that hold rows by their statistics (run ANALYZE first): history is partitioned by day,
    and an empty day read whole (the planner's right choice for it) costs nothing."""
    rows = await conn.fetch("SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples > 0")
    return {row["relname"] for row in rows}


def whole_reads(plan: str, populated: set[str]) -> list[str]:
    """The tables holding rows that a text plan reads whole (sequential scans)."""
    return [table for table in _SEQ_SCAN.findall(plan) if table in populated]
