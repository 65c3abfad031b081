"""Serve functions from a Django project: ``urlpatterns = [stepline.django.serve(client, functions)]``.

A thin adapter: a URL pattern whose view translates Django's request into ``Handler.handle`` (run on the
SDK's event loop thread, background.py) and its answer back. The view is synchronous and exempt from CSRF (the
gateway signs its requests instead); under ASGI, Django runs it in a thread. Django comes with the
``stepline[django]`` extra; the SDK itself does not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt

from stepline.background import LOOP
from stepline.client import Client
from stepline.function import Function
from stepline.handler import Handler, mark_served
from stepline.protocol import DEFAULT_SERVE_PATH

# The framework name the official Python SDK reports for Django apps at sync.
FRAMEWORK = "django"


def serve(
    client: Client, functions: Iterable[Function], *, serve_path: str = DEFAULT_SERVE_PATH
) -> URLPattern:
    """A URL pattern serving ``functions`` at ``serve_path`` (GET inspects, PUT syncs, POST calls)."""
    handler = Handler(client, functions, framework=FRAMEWORK)

    @csrf_exempt
    def stepline_serve(request: HttpRequest) -> HttpResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        url = request.build_absolute_uri()
        answer = LOOP.run(handler.handle(request.method or "GET", url, headers, request.body))
        response = HttpResponse(answer.body, status=answer.status)
        for name, value in answer.headers.items():
            response[name] = value
        return response

    mark_served(stepline_serve, handler)
    return path(serve_path.lstrip("/"), stepline_serve, name="stepline")
