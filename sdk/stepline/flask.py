"""Serve functions from a Flask app: ``stepline.flask.serve(app, client, functions)``.

A thin adapter: one URL rule whose view translates Flask's request into ``Handler.handle`` (run on the
SDK's event loop thread, background.py) and its Response back. Flask comes with the ``stepline[flask]`` extra;
the SDK itself does not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable

import flask

from stepline.asgi import SERVE_METHODS
from stepline.background import LOOP
from stepline.client import Client
from stepline.function import Function
from stepline.handler import Handler, mark_served
from stepline.protocol import DEFAULT_SERVE_PATH

# The framework name the official Python SDK reports for Flask apps at sync.
FRAMEWORK = "flask"


def serve(
    app: flask.Flask,
    client: Client,
    functions: Iterable[Function],
    *,
    serve_path: str = DEFAULT_SERVE_PATH,
) -> Handler:
    """Serve ``functions`` at ``serve_path`` of ``app`` (GET inspects, PUT syncs, POST calls)."""
    handler = Handler(client, functions, framework=FRAMEWORK)

    def stepline_serve() -> flask.Response:
        request = flask.request
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = LOOP.run(handler.handle(request.method, request.url, headers, request.get_data()))
        return flask.Response(answer.body, status=answer.status, headers=answer.headers)

    app.add_url_rule(serve_path, endpoint="stepline", view_func=stepline_serve, methods=SERVE_METHODS)
    mark_served(app, handler)
    return handler
