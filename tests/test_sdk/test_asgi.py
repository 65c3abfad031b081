"""The ASGI adapter: a standalone app with no framework, and a route mounted in a plain Starlette app."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import fastapi
import httpx
import stepline
import stepline.asgi
import stepline.handler
import stepline.starlette
from starlette.applications import Starlette

from .conftest import call_body, sha1

client = stepline.Client("app", dev=True)


@client.function(id="double", trigger="n/given")
async def double(ctx: stepline.Context) -> int:
    return await ctx.step.run("double", lambda n: n * 2, ctx.event.data["n"])


async def lifespan(app: Any, *messages: str) -> list[str]:
    """Drive the app's lifespan protocol with ``messages``; answer what it sent back."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in messages:
        inbox.put_nowait({"type": message})
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, inbox.get, send)
    return sent


async def test_serve_app_answers_calls_and_closes_the_client_on_shutdown() -> None:
    app = stepline.asgi.serve_app(client, [double], serve_path="/functions")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http:
        pooled = client.http
        res = await http.post("/functions?fnId=app-double&stepId=step", json=call_body())
        assert res.json() == [
            {"id": sha1("double"), "op": "StepRun", "name": "double", "displayName": "double", "data": 2}
        ]
        assert res.headers["x-inngest-framework"] == "asgi"
        assert (await http.get("/functions")).json()["function_count"] == 1
        assert (await http.delete("/functions")).status_code == 405
        missing = await http.get("/elsewhere")
        assert missing.status_code == 404
        assert "served at /functions" in missing.text
    assert await lifespan(app, "lifespan.startup", "lifespan.shutdown") == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert pooled.is_closed


async def test_the_sync_url_is_the_one_the_request_was_made_to() -> None:
    app = stepline.asgi.serve_app(client, [double])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    handler = app.handler
    scope = {"type": "http", "scheme": "https", "path": "/api/inngest", "query_string": b"", "headers": []}
    assert stepline.asgi.request_url({**scope, "server": ("shop.internal", 443)}) == (
        "https://shop.internal/api/inngest"
    )
    host = [(b"host", b"api.example:8443")]
    assert handler.serve_url(stepline.asgi.request_url({**scope, "headers": host})) == (
        "https://api.example:8443/api/inngest"
    )
    await app({**scope, "method": "GET", "headers": host}, receive, send)
    assert sent[0]["status"] == 200


def test_the_asgi_adapter_needs_no_web_framework() -> None:
    code = "import sys, stepline.asgi; print(sorted(m for m in ('starlette', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_serve_route_in_a_starlette_app() -> None:
    app = Starlette(routes=[stepline.starlette.serve_route(client, [double])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http:
        steps = {sha1("double"): {"data": 84}}
        res = await http.post("/api/inngest?fnId=app-double&stepId=step", json=call_body(steps=steps))
        assert (res.status_code, res.json(), res.headers["x-inngest-framework"]) == (200, 84, "starlette")


async def test_serve_app_in_front_of_another_app_takes_the_calls_past_its_middleware() -> None:
    own = stepline.Client("app", dev=True)

    @own.function(id="double", trigger="n/given")
    async def doubled(ctx: stepline.Context) -> int:
        return await ctx.step.run("double", lambda n: n * 2, ctx.event.data["n"])

    seen: list[str] = []
    inner = fastapi.FastAPI()

    @inner.middleware("http")
    async def record(request: fastapi.Request, call_next: Any) -> Any:
        seen.append(request.url.path)
        return await call_next(request)

    @inner.get("/hello")
    async def hello() -> str:
        return "hi"

    app = stepline.asgi.serve_app(own, [doubled], fallback=inner)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http:
        pooled = own.http
        res = await http.post("/api/inngest?fnId=app-double&stepId=step", json=call_body())
        assert [op["data"] for op in res.json()] == [2]
        assert (await http.get("/hello")).json() == "hi"
        assert (await http.get("/nowhere")).status_code == 404
    # The app's own paths went through its middleware; the gateway's call did not.
    assert seen == ["/hello", "/nowhere"]
    assert stepline.handler.handlers_of(inner)[0].functions == [doubled]
    # The lifespan is the other app's, and the client is closed at its shutdown.
    assert await lifespan(app, "lifespan.startup", "lifespan.shutdown") == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert pooled.is_closed
