"""Serve functions from an existing FastAPI (or Starlette) app: ``stepline.fastapi.serve(app, client, fns)``.

A thin adapter: it adds one route whose endpoint is asgi.py's ``ServeEndpoint``, a plain ASGI app, so
nothing here imports FastAPI or Starlette: the app given is the only framework object touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stepline.asgi import SERVE_METHODS, ServeEndpoint
from stepline.client import Client
from stepline.function import Function
from stepline.handler import Handler, mark_served
from stepline.protocol import DEFAULT_SERVE_PATH

# The framework name the official Python SDK reports for FastAPI apps at sync.
FRAMEWORK = "fast_api"


def serve(
    app: Any,
    client: Client,
    functions: Iterable[Function],
    *,
    serve_path: str = DEFAULT_SERVE_PATH,
) -> Handler:
    """Serve ``functions`` at ``serve_path`` of ``app`` (GET inspects, PUT syncs, POST calls)."""
    handler = Handler(client, functions, framework=FRAMEWORK)
    app.add_route(serve_path, ServeEndpoint(handler), methods=SERVE_METHODS, include_in_schema=False)
    mark_served(app, handler)
    return handler
