"""Serve functions from a Starlette app: ``Starlette(routes=[stepline.starlette.serve_route(client, fns)])``.

A thin adapter: one route whose endpoint is asgi.py's ``ServeEndpoint``. It imports Starlette, which the
SDK does not depend on: only apps that use Starlette import this module (FastAPI's adapter is fastapi.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import Route

from stepline.asgi import SERVE_METHODS, ServeEndpoint
from stepline.client import Client
from stepline.function import Function
from stepline.handler import Handler, mark_served
from stepline.protocol import DEFAULT_SERVE_PATH


def serve_route(
    client: Client,
    functions: Iterable[Function],
    *,
    serve_path: str = DEFAULT_SERVE_PATH,
    framework: str = "starlette",
) -> Route:
    """A route serving ``functions`` at ``serve_path`` (GET inspects, PUT syncs, POST calls)."""
    handler = Handler(client, functions, framework=framework)
    route = Route(serve_path, ServeEndpoint(handler), methods=SERVE_METHODS, include_in_schema=False)
    mark_served(route, handler)
    return route
