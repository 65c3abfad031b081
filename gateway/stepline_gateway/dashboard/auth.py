"""The API token that guards the dashboard and the ``/v1`` API outside dev mode (docs/api.md, Authentication).

A program sends ``Authorization: Bearer <token>``; a browser signs in once at ``/login`` and then carries a
session cookie derived from the token (never the token itself), so changing the token signs every browser
out. Ingest (``/e/{key}``), SDK sync, the checkpoint API, health and metrics keep their own keys and stay
outside the guard. A production gateway given neither ``api_token`` nor ``no_api_token`` answers 401 saying
how to set one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from stepline_gateway.dashboard.pages import render
from stepline_gateway.settings import Settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "stepline_session"
# The dashboard sends this header with every request. A page on another site cannot add it without a CORS
# preflight, which the gateway never grants, so a session cookie alone never changes anything.
DASHBOARD_HEADER = "x-stepline-dashboard"
LOCKED = (
    "this gateway has no API token, so the dashboard and the /v1 API are locked: set STEPLINE_API_TOKEN "
    "(or --api-token), or serve them without a token behind your own auth with STEPLINE_NO_API_TOKEN=true "
    "(or --no-api-token)"
)
REFUSED = "the /v1 API needs the gateway's API token: send the header 'Authorization: Bearer <token>'"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_DAYS = 7
_MAX_FORM_BYTES = 4096


def is_open(settings: Settings) -> bool:
    """Whether the dashboard and the API are served without a token."""
    return settings.dev or settings.no_api_token


def guarded(path: str) -> bool:
    # The checkpoint API is the SDKs' own, behind the signing key's bearer token (checkpoint.py).
    return path == "/" or (path.startswith("/v1/") and not path.startswith("/v1/checkpoint"))


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"stepline dashboard session", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class TokenGuard:
    """ASGI middleware: lets a guarded request through only with the token or a signed-in browser's cookie."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self._open = is_open(settings)
        self._token = settings.api_token or None
        if not self._open and self._token is None:
            log.warning("%s", LOCKED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open or not guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        """None when the request may go on, else the answer that refuses it."""
        token = self._token
        if token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and given.strip():
                if _same(given.strip(), token):
                    return None
            elif _same(request.cookies.get(SESSION_COOKIE, ""), session_value(token)):
                if request.method in _SAFE_METHODS or DASHBOARD_HEADER in request.headers:
                    return None
                message = (
                    f"a signed-in browser changes runs only from the dashboard (header {DASHBOARD_HEADER})"
                )
                return JSONResponse({"error": message}, status_code=403)
        if request.url.path == "/":
            return RedirectResponse("/login", status_code=303)
        return JSONResponse(
            {"error": LOCKED if token is None else REFUSED},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="stepline"'},
        )


async def login(request: Request) -> Response:
    """``GET /login`` shows the sign-in form, ``POST /login`` checks the token and sets the session cookie."""
    settings: Settings = request.app.state.gateway.settings
    if is_open(settings):
        return RedirectResponse("/", status_code=303)
    token = settings.api_token or None
    if token is None:
        return _login_page(LOCKED, form=False, status=401 if request.method == "POST" else 200)
    if request.method != "POST":
        return _login_page("", form=True)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return _login_page("That is not an API token: it is far too long.", form=True, status=413)
    given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()
    if not _same(given, token):
        return _login_page("That is not this gateway's API token.", form=True, status=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token),
        max_age=_SESSION_DAYS * 86400,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")
    return response


def _login_page(message: str, *, form: bool, status: int = 200) -> HTMLResponse:
    return render("login.html", status=status, message=message, form_hidden="" if form else "hidden")
