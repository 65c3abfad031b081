"""Serve functions from an existing FastAPI (or Starlette) app: ``stepline.fastapi.serve(app, client, fns)``.

A thin adapter: it adds one route whose endpoint is asgi.py's translation to the framework-neutral Handler.
FastAPI apps are Starlette apps, so nothing here needs FastAPI itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.applications import Starlette

from stepline.asgi import SERVE_METHODS, endpoint
from stepline.client import Client
from stepline.function import Function
from stepline.handler import Handler
from stepline.protocol import DEFAULT_SERVE_PATH

# The framework name the official Python SDK reports for FastAPI apps at sync.
FRAMEWORK = "fast_api"


def serve(
    app: Starlette,
    client: Client,
    functions: Iterable[Function],
    *,
    serve_path: str = DEFAULT_SERVE_PATH,
) -> Handler:
    """Serve ``functions`` at ``serve_path`` of ``app`` (GET inspects, PUT syncs, POST calls)."""
    handler = Handler(client, functions, framework=FRAMEWORK)
    app.add_route(serve_path, endpoint(handler), methods=SERVE_METHODS, include_in_schema=False)
    return handler
