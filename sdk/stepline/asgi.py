"""Serve functions from any ASGI server through Starlette: a route to add to an app, or a whole app.

Only translation happens here: a Starlette request becomes ``Handler.handle``'s arguments, and its
Response becomes a Starlette response. This is the only module, with fastapi.py, that imports Starlette.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepline.client import Client
from stepline.function import Function
from stepline.handler import Handler
from stepline.protocol import DEFAULT_SERVE_PATH

SERVE_METHODS = ["GET", "POST", "PUT"]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint that hands every request to ``handler``."""

    async def serve(request: Request) -> Response:
        answer = await handler.handle(
            request.method,
            str(request.url),
            {name.lower(): value for name, value in request.headers.items()},
            await request.body(),
        )
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    return serve


def serve_route(
    client: Client,
    functions: Iterable[Function],
    *,
    serve_path: str = DEFAULT_SERVE_PATH,
    framework: str = "starlette",
) -> Route:
    """A route serving ``functions`` at ``serve_path``, for ``Starlette(routes=[...])``."""
    handler = Handler(client, functions, framework=framework)
    return Route(serve_path, endpoint(handler), methods=SERVE_METHODS, include_in_schema=False)


def serve_app(
    client: Client,
    functions: Iterable[Function],
    *,
    serve_path: str = DEFAULT_SERVE_PATH,
) -> Starlette:
    """A complete ASGI app serving ``functions`` at ``serve_path``; it closes the client on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[serve_route(client, functions, serve_path=serve_path)], lifespan=lifespan)
