"""Function services written by hand for the fault tests: one that answers raw protocol bytes (poison
answers an SDK would never send), and one that accepts connections and never answers (a hung service)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support import serve


def step_hash(step_id: str) -> str:
    return hashlib.sha1(step_id.encode()).hexdigest()


def step_run(step_id: str, data_json: str) -> bytes:
    """A 206 answer of one StepRun whose ``data`` is the JSON text given, as it is (NaN, \\u0000...)."""
    op = f'{{"op": "StepRun", "id": "{step_hash(step_id)}", "name": "{step_id}", "displayName": "{step_id}"'
    return f'[{op}, "data": {data_json}}}]'.encode()


Answer = Callable[[dict[str, Any]], Awaitable[Response] | Response]


class RawService:
    """Answers each function's calls with ``answers[fn_id](request body)``; counts the calls by function."""

    def __init__(self, answers: dict[str, Answer]) -> None:
        self.answers = answers
        self.calls: collections.Counter[str] = collections.Counter()
        self.bodies: list[dict[str, Any]] = []

    async def _call(self, request: Request) -> Response:
        function_id = request.query_params["fnId"]
        body = json.loads(await request.body())
        self.calls[function_id] += 1
        self.bodies.append(body)
        answer = self.answers[function_id](body)
        return await answer if isinstance(answer, Awaitable) else answer

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve on loopback; yield the serve URL."""
        app = Starlette(routes=[Route("/api/inngest", self._call, methods=["POST"])])
        async with serve(app) as url:
            yield f"{url}/api/inngest"


def raw(status: int, content: bytes, **headers: str) -> Response:
    return Response(content, status_code=status, media_type="application/json", headers=headers)


class HungService:
    """Accepts connections and reads requests, and never answers any of them."""

    def __init__(self) -> None:
        self.received = 0
        self.pending = 0
        self.most_pending = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                # One request: its headers (the body is never needed), then nothing is ever written back.
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    return
                self.received += 1
                self.pending += 1
                self.most_pending = max(self.most_pending, self.pending)
                try:
                    await reader.read()  # until the caller gives up and closes the connection
                finally:
                    self.pending -= 1
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}/api/inngest"
        finally:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


class OverlapService:
    """Finishes every call after ``hold_s``; records the calls in flight at once (overall and per value of
    ``data[key]`` of the event), the most seen, and the order in which the events' ``data["n"]`` started."""

    def __init__(self, *, hold_s: float = 0.05, key: str | None = None) -> None:
        self.hold_s = hold_s
        self.key = key
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()
        self.started: list[Any] = []
        self.calls = 0

    async def _call(self, request: Request) -> Response:
        body = json.loads(await request.body())
        data = body["event"]["data"]
        group = str(data.get(self.key)) if self.key else ""
        self.calls += 1
        self.started.append(data.get("n"))
        self.in_flight[""] += 1
        if group:
            self.in_flight[group] += 1
        for name in {"", group}:
            self.most[name] = max(self.most[name], self.in_flight[name])
        try:
            await asyncio.sleep(self.hold_s)
        finally:
            self.in_flight[""] -= 1
            if group:
                self.in_flight[group] -= 1
        return raw(200, json.dumps({"n": data.get("n")}).encode())

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        app = Starlette(routes=[Route("/api/inngest", self._call, methods=["POST"])])
        async with serve(app) as url:
            yield f"{url}/api/inngest"
