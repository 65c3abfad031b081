"""The ASGI adapter: a standalone app, and a route mounted in a plain Starlette app."""

from __future__ import annotations

import httpx
import stepline
import stepline.asgi
from starlette.applications import Starlette

from .conftest import call_body, sha1

client = stepline.Client("app", dev=True)


@client.function(id="double", trigger="n/given")
async def double(ctx: stepline.Context) -> int:
    return await ctx.step.run("double", lambda n: n * 2, ctx.event.data["n"])


async def test_serve_app_answers_calls_and_closes_the_client_on_shutdown() -> None:
    app = stepline.asgi.serve_app(client, [double], serve_path="/functions")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http,
    ):
        pooled = client.http
        res = await http.post("/functions?fnId=app-double&stepId=step", json=call_body())
        assert res.json() == [
            {"id": sha1("double"), "op": "StepRun", "name": "double", "displayName": "double", "data": 2}
        ]
        assert (await http.get("/functions")).json()["function_count"] == 1
        assert (await http.delete("/functions")).status_code == 405
    assert pooled.is_closed


async def test_serve_route_in_a_starlette_app() -> None:
    app = Starlette(routes=[stepline.asgi.serve_route(client, [double])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http:
        steps = {sha1("double"): {"data": 84}}
        res = await http.post("/api/inngest?fnId=app-double&stepId=step", json=call_body(steps=steps))
        assert (res.status_code, res.json(), res.headers["x-inngest-framework"]) == (200, 84, "starlette")
