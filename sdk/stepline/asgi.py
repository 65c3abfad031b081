"""Serve functions from any ASGI server (uvicorn, hypercorn...), with no web framework needed.

``serve_app(client, functions)`` is a complete ASGI app: the serve endpoint at ``serve_path``, 404
elsewhere (or, with ``fallback=app``, everything else handed to another ASGI app such as a FastAPI or
Starlette one, so that the gateway's calls skip that app's middleware stack and router), and on lifespan
shutdown the client's connections closed. ``ServeEndpoint`` is the endpoint
alone, for a router to mount (fastapi.py and starlette.py use it). Only translation happens here: the
request's scope and body become ``Handler.handle``'s arguments and its Response becomes ASGI messages.
Nothing beyond the standard library is imported: the SDK's dependencies stay httpx and pydantic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeAlias

from stepline.client import Client
from stepline.function import Function
from stepline.handler import Handler, Response, mark_served
from stepline.protocol import DEFAULT_SERVE_PATH

SERVE_METHODS = ["GET", "POST", "PUT"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def request_url(scope: Scope) -> str:
    """The URL a request was made to, as its Host header (or the server's address) names it."""
    scheme = scope.get("scheme", "http")
    host = next((value.decode("latin-1") for key, value in scope["headers"] if key == b"host"), None)
    if not host:
        server = scope.get("server")
        if server is None:
            host = "localhost"
        else:
            name, port = server
            name = f"[{name}]" if ":" in name else name
            host = name if _DEFAULT_PORTS.get(scheme) == port else f"{name}:{port}"
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scheme}://{host}{scope['path']}" + (f"?{query}" if query else "")


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(send: Send, answer: Response) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers.items()]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


class ServeEndpoint:
    """An ASGI app that hands every HTTP request to ``handler`` (the router chose the path)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        mark_served(self, handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        body = await _body(receive)
        answer = await self.handler.handle(scope["method"], request_url(scope), headers, body)
        await _respond(send, answer)


ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServeApp:
    """A complete ASGI app serving one handler at ``serve_path``; it closes the client on shutdown.
    Requests for other paths, and the lifespan, go to ``fallback`` when there is one."""

    def __init__(self, handler: Handler, serve_path: str, fallback: ASGIApp | None = None) -> None:
        self._endpoint = ServeEndpoint(handler)
        self._serve_path = serve_path.rstrip("/")
        self._fallback = fallback
        mark_served(self, handler)
        if fallback is not None:
            mark_served(fallback, handler)

    @property
    def handler(self) -> Handler:
        return self._endpoint.handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == self._serve_path:
            await self._endpoint(scope, receive, send)
        elif self._fallback is not None:
            if scope["type"] == "lifespan":
                receive = self._closing_on_shutdown(receive)
            await self._fallback(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            message = f"not found: Stepline's functions are served at {self._serve_path or '/'}"
            await _respond(send, _text(404, message))

    def _closing_on_shutdown(self, receive: Receive) -> Receive:
        """The fallback app's lifespan, with the client's connections closed before its shutdown."""

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.handler.client.aclose()
            return message

        return wrapped

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.handler.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _text(status: int, text: str) -> Response:
    return Response(status, {"content-type": "text/plain; charset=utf-8"}, text.encode())


def serve_app(
    client: Client,
    functions: Iterable[Function],
    *,
    serve_path: str = DEFAULT_SERVE_PATH,
    framework: str = "asgi",
    fallback: ASGIApp | None = None,
) -> ServeApp:
    """An ASGI app serving ``functions`` at ``serve_path``: ``uvicorn module:app`` runs it as it is.

    ``fallback``: an ASGI app (a FastAPI or Starlette app, say) that answers every other path and takes the
    lifespan; the gateway's calls then reach the SDK without going through its middleware and router
    (which do not see them), the cheapest way to serve the protocol from such an app.
    """
    return ServeApp(Handler(client, functions, framework=framework), serve_path, fallback)
