"""The dashboard: runs, their steps, events and functions, in the browser at ``/``, built on the REST API.

``routes()`` gives the pages (``pages``) with sign-in and sign-out (``auth``); ``middleware(settings)`` the
token guard over the dashboard and the ``/v1`` API. ``api.create_app`` adds both. Plain HTML, CSS and a
small script in ``static/``: no build step, nothing fetched from outside the gateway.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from stepline_gateway.dashboard import auth, pages
from stepline_gateway.settings import Settings


def routes() -> list[BaseRoute]:
    return [
        Route("/", pages.index, methods=["GET"]),
        Route("/login", auth.login, methods=["GET", "POST"]),
        Route("/logout", auth.logout, methods=["POST"]),
        Mount("/dashboard", app=StaticFiles(directory=pages.STATIC), name="dashboard"),
    ]


def middleware(settings: Settings) -> list[Middleware]:
    return [Middleware(auth.TokenGuard, settings=settings)]
