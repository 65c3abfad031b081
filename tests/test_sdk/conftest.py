"""Fixtures for the SDK tests: an app served through each adapter in turn, and a recording fake gateway.

Tests act as the gateway themselves: they build call bodies by hand and read the answers. Every test that
takes ``serve`` runs once per adapter (FastAPI, plain ASGI, Flask, Django): the adapters only translate, so
each scenario must give the same answers through all of them. The WSGI ones are reached through uvicorn's
WSGI middleware, in memory like the others.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import itertools
import logging
import socket
import sys
import types
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import django
import flask
import httpx
import pytest
import stepline
import stepline.asgi
import stepline.django
import stepline.fastapi
import stepline.flask
import uvicorn
import uvicorn.middleware.wsgi
from django.conf import settings as django_settings
from django.core.handlers.wsgi import WSGIHandler
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SERVE_URL = "http://testserver/api/inngest"
SIGNING_KEY = "signkey-test-" + "ab" * 32
FALLBACK_KEY = "signkey-test-" + "cd" * 32


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def call_body(
    *,
    steps: dict[str, Any] | None = None,
    attempt: int = 0,
    max_attempts: int = 5,
    disable_immediate_execution: bool = False,
    event: dict[str, Any] | None = None,
    qi_id: str | None = None,
) -> dict[str, Any]:
    event = event or {"name": "test/go", "data": {"n": 1}, "id": "evt-1", "ts": 1_700_000_000_000}
    return {
        "event": event,
        "events": [event],
        "steps": steps or {},
        "ctx": {
            "run_id": "run-1",
            "attempt": attempt,
            "max_attempts": max_attempts,
            "disable_immediate_execution": disable_immediate_execution,
            "stack": {"stack": list((steps or {}).keys())},
            "some_future_key": {"ignored": True},
            # A gateway names the call's work item for the checkpoint API; without it, no checkpointing.
            **({"qi_id": qi_id, "fn_id": "app-fn"} if qi_id else {}),
        },
        "use_api": False,
    }


@dataclass
class Served:
    """An app serving some functions, and an HTTP client that reaches it in memory."""

    http: httpx.AsyncClient
    client: stepline.Client
    # The framework name the adapter reports (x-inngest-framework, the sync's "framework").
    framework: str

    async def call(
        self, fn_id: str, body: dict[str, Any], *, step_id: str = "step", **kw: Any
    ) -> httpx.Response:
        return await self.http.post(
            "/api/inngest", params={"fnId": fn_id, "stepId": step_id}, json=body, **kw
        )


def fastapi_app(client: stepline.Client, functions: list[stepline.Function]) -> Any:
    app = FastAPI()
    stepline.fastapi.serve(app, client, functions)
    return app


def asgi_app(client: stepline.Client, functions: list[stepline.Function]) -> Any:
    return stepline.asgi.serve_app(client, functions)


def flask_app(client: stepline.Client, functions: list[stepline.Function]) -> Any:
    app = flask.Flask("stepline-test")
    stepline.flask.serve(app, client, functions)
    return uvicorn.middleware.wsgi.WSGIMiddleware(app)


_urlconfs = itertools.count()


def django_app(client: stepline.Client, functions: list[stepline.Function]) -> Any:
    if not django_settings.configured:
        django_settings.configure(ALLOWED_HOSTS=["*"], ROOT_URLCONF=None, USE_TZ=True)
        django.setup()
    # Each app its own URLconf module, so that the apps of a test never see another's functions.
    urls = types.ModuleType(f"stepline_test_urls_{next(_urlconfs)}")
    urls.urlpatterns = [stepline.django.serve(client, functions)]  # type: ignore[attr-defined]
    sys.modules[urls.__name__] = urls

    class Project(WSGIHandler):
        def get_response(self, request: Any) -> Any:
            request.urlconf = urls.__name__
            return super().get_response(request)

    return uvicorn.middleware.wsgi.WSGIMiddleware(Project())


# Each adapter: how to make an app of it, and the framework name it reports.
ADAPTERS: dict[str, tuple[Callable[[stepline.Client, list[stepline.Function]], Any], str]] = {
    "fastapi": (fastapi_app, "fast_api"),
    "asgi": (asgi_app, "asgi"),
    "flask": (flask_app, "flask"),
    "django": (django_app, "django"),
}


@pytest.fixture(params=list(ADAPTERS))
async def serve(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """``await serve(functions, client)`` -> Served, through each adapter in turn on ASGITransport."""
    opened: list[httpx.AsyncClient] = []
    adapter, framework = ADAPTERS[request.param]

    async def make(functions: list[stepline.Function], client: stepline.Client | None = None) -> Served:
        client = client or stepline.Client("app", dev=True)
        app = adapter(client, functions)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        opened.append(http)
        return Served(http=http, client=client, framework=framework)

    yield make
    for http in opened:
        await http.aclose()


@pytest.fixture(autouse=True)
def _no_asyncio_noise(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Cancelled function tasks must end cleanly: no 'Task was destroyed' or unretrieved exceptions."""
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        yield
        gc.collect()
    noise = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert noise == []


@dataclass
class FakeGateway:
    """A recording stand-in for the gateway's /e/<key>, /fn/register and checkpoint endpoints, on a real
    socket."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Bearer tokens /fn/register and the checkpoint API accept; None accepts any request.
    accepted_tokens: set[str] | None = None
    register_answer: tuple[int, dict[str, Any]] = (200, {"ok": True, "modified": True})
    # Statuses the checkpoint API answers in turn (then 200).
    checkpoint_statuses: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.requests.clear()
        self.accepted_tokens = None
        self.register_answer = (200, {"ok": True, "modified": True})
        self.checkpoint_statuses = []

    async def events(self, request: Request) -> JSONResponse:
        body = await request.json()
        self._record(request, body)
        if request.path_params["key"] == "unknown-key":
            return JSONResponse({"error": "event key not found"}, status_code=401)
        return JSONResponse({"ids": [f"id-{i}" for i in range(len(body))], "status": 200})

    async def register(self, request: Request) -> JSONResponse:
        body = await request.json()
        self._record(request, body)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.accepted_tokens is not None and token not in self.accepted_tokens:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        status, answer = self.register_answer
        return JSONResponse(answer, status_code=status)

    async def checkpoint(self, request: Request) -> JSONResponse:
        body = await request.json()
        self._record(request, body)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.accepted_tokens is not None and token not in self.accepted_tokens:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        status = self.checkpoint_statuses.pop(0) if self.checkpoint_statuses else 200
        return JSONResponse({"error": "refused"} if status >= 300 else {"ok": True}, status_code=status)

    def checkpoints(self) -> list[dict[str, Any]]:
        """The bodies of the checkpoint requests received."""
        return [r["body"] for r in self.requests if r["path"].startswith("/v1/checkpoint/")]

    def _record(self, request: Request, body: Any) -> None:
        self.requests.append(
            {
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": body,
            }
        )


@pytest.fixture(scope="session")
async def _gateway_server() -> AsyncIterator[FakeGateway]:
    gateway = FakeGateway()
    app = Starlette(
        routes=[
            Route("/e/{key}", gateway.events, methods=["POST"]),
            Route("/fn/register", gateway.register, methods=["POST"]),
            Route("/v1/checkpoint/{run_id}/async", gateway.checkpoint, methods=["POST"]),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    gateway.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield gateway
    server.should_exit = True
    await task
    sock.close()


@pytest.fixture
def gateway(_gateway_server: FakeGateway) -> FakeGateway:
    _gateway_server.reset()
    return _gateway_server
