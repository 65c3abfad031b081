"""The dashboard's pages: the single-page app at ``/``, the sign-in page, and the static files they use.

The HTML lives in ``templates/`` (filled with ``$name`` placeholders, values escaped), the script, styles
and icon in ``static/`` (served under ``/dashboard/``). Pages forbid any script, style or connection that
does not come from the gateway itself.
"""

from __future__ import annotations

import functools
import hashlib
import html
from pathlib import Path
from string import Template

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from stepline_gateway.settings import Settings

HERE = Path(__file__).parent
STATIC = HERE / "static"
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def _template(name: str) -> Template:
    return Template((HERE / "templates" / name).read_text("utf-8"))


@functools.cache
def assets_version() -> str:
    """A digest of the script and styles: their URLs change with them, so no browser keeps a stale copy."""
    digest = hashlib.sha256()
    for name in ("app.js", "style.css"):
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:12]


def render(name: str, *, status: int = 200, **values: str) -> HTMLResponse:
    values = {**values, "assets": assets_version()}
    page = _template(name).substitute({key: html.escape(value) for key, value in values.items()})
    return HTMLResponse(page, status_code=status, headers=_SECURITY_HEADERS)


def access_mode(settings: Settings) -> str:
    """How this gateway lets people in, as the page shows it: ``dev``, ``open`` or ``token``."""
    if settings.dev:
        return "dev"
    return "open" if settings.no_api_token else "token"


async def index(request: Request) -> Response:
    return render("index.html", mode=access_mode(request.app.state.gateway.settings))
