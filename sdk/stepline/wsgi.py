"""Serve functions from WSGI servers and sync frameworks: one event loop thread answers for them.

The handler is async and keeps pooled connections (to the gateway, to the checkpoint API) that belong to
one event loop, so each request thread hands it to the SDK's loop thread (background.py) and waits for the
answer. ``serve_app`` is a complete WSGI app for any WSGI server (gunicorn, waitress, wsgiref); flask.py
and django.py translate their frameworks' requests the same way.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stepline.background import LOOP
from stepline.client import Client
from stepline.function import Function
from stepline.handler import Handler, mark_served
from stepline.protocol import DEFAULT_SERVE_PATH

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def environ_url(environ: Mapping[str, Any]) -> str:
    """The request's URL from a WSGI environ (PEP 3333's reconstruction)."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "localhost")
        port = environ.get("SERVER_PORT")
        if port and port != {"http": "80", "https": "443"}.get(scheme):
            host = f"{host}:{port}"
    path = urllib.parse.quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    query = environ.get("QUERY_STRING")
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def environ_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


class ServeApp:
    """A WSGI app serving one handler at ``serve_path``."""

    def __init__(self, handler: Handler, serve_path: str) -> None:
        self.handler = handler
        self._serve_path = serve_path
        mark_served(self, handler)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").rstrip("/") != self._serve_path.rstrip("/"):
            body = f"not found: Stepline's functions are served at {self._serve_path}".encode()
            start_response("404 Not Found", [("content-type", "text/plain; charset=utf-8")])
            return [body]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        method, url, headers = environ["REQUEST_METHOD"], environ_url(environ), environ_headers(environ)
        answer = LOOP.run(self.handler.handle(method, url, headers, body))
        start_response(f"{answer.status} {_reason(answer.status)}", list(answer.headers.items()))
        return [answer.body]


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def serve_app(
    client: Client, functions: Iterable[Function], *, serve_path: str = DEFAULT_SERVE_PATH
) -> ServeApp:
    """A WSGI app serving ``functions`` at ``serve_path``."""
    return ServeApp(Handler(client, functions, framework="wsgi"), serve_path)
