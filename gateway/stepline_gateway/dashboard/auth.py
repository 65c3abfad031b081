"""The API tokens that guard the dashboard and the ``/v1`` API outside dev mode (docs/api.md, Authentication).

The cluster admin token (``api_token``) and the tokens published from Secrets (access.py) each name a
:class:`~stepline_gateway.access.Principal`, which the guard puts on the request for the handlers to ask.

A program sends ``Authorization: Bearer <token>``; a browser signs in once at ``/login`` and then carries a
session cookie: a random value made for that sign-in, of which Postgres keeps only the sha256
(``dashboard_sessions``). A session expires after ``SESSION_HOURS`` by the database's clock and ends on every
replica at sign-out (``POST /logout``); the cookie carries nothing derived from the token. Ingest
(``/e/{key}``), SDK sync, the checkpoint API, health and metrics keep their own keys and stay outside the
guard. A production gateway given neither ``api_token`` nor ``no_api_token`` answers 401 saying
how to set one.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import secrets
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from stepline_store import queries
from stepline_store.pool import Store

from stepline_gateway.access import ADMIN, PRINCIPAL_KEY, Principal, token_hash
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
# A sign-in lasts this long; then the browser signs in again.
SESSION_HOURS = 12
_MAX_FORM_BYTES = 4096


def is_open(settings: Settings) -> bool:
    """Whether the dashboard and the API are served without a token."""
    return settings.dev or settings.no_api_token


def guarded(path: str) -> bool:
    # The checkpoint API is the SDKs' own, behind the signing key's bearer token (checkpoint.py).
    return path == "/" or (path.startswith("/v1/") and not path.startswith("/v1/checkpoint"))


def session_digest(cookie: str) -> str:
    """What the store keeps of a session cookie."""
    return hashlib.sha256(cookie.encode("utf-8", "surrogateescape")).hexdigest()


async def open_session(store: Store, holder: Principal = ADMIN, token_sha256: str | None = None) -> str:
    """A new random session for ``holder``, recorded; answers the cookie's value. ``token_sha256``: the
    hash of the published token signed in with, whose revocation ends the session (None: the admin's)."""
    cookie = secrets.token_urlsafe(32)
    await queries.open_session(
        store,
        session_sha256=session_digest(cookie),
        lifetime=datetime.timedelta(hours=SESSION_HOURS),
        role=holder.role,
        namespace=holder.namespace,
        token_sha256=token_sha256,
    )
    return cookie


async def session_holder(store: Store, cookie: str) -> Principal | None:
    """The holder of an open session, None if there is none (expired, signed out, token revoked)."""
    if not cookie:
        return None
    row = await queries.session_is_open(store, session_sha256=session_digest(cookie))
    if row is None:
        return None
    return Principal("operator" if row["role"] == "operator" else "viewer", row["namespace"])


async def session_is_open(store: Store, cookie: str) -> bool:
    return await session_holder(store, cookie) is not None


async def close_session(store: Store, cookie: str) -> None:
    if cookie:
        await queries.close_session(store, session_sha256=session_digest(cookie))


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
        refusal = await self._refusal(request)
        if isinstance(refusal, Principal):
            scope[PRINCIPAL_KEY] = refusal
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    async def _refusal(self, request: Request) -> Principal | Response:
        """The holder when the request may go on, else the answer that refuses it."""
        token = self._token
        gateway = request.app.state.gateway
        locked = token is None and not len(gateway.api_tokens)
        if not locked:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and given.strip():
                holder = holder_of(gateway, token, given)
                if holder is not None:
                    return holder
            else:
                holder = await session_holder(gateway.store, request.cookies.get(SESSION_COOKIE, ""))
                if holder is not None:
                    if request.method in _SAFE_METHODS or DASHBOARD_HEADER in request.headers:
                        return holder
                    message = (
                        "a signed-in browser changes runs only from the dashboard "
                        f"(header {DASHBOARD_HEADER})"
                    )
                    return JSONResponse({"error": message}, status_code=403)
        if request.url.path == "/":
            return RedirectResponse("/login", status_code=303)
        return JSONResponse(
            {"error": LOCKED if locked else REFUSED},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="stepline"'},
        )


def holder_of(gateway: Any, admin_token: str | None, given: str) -> Principal | None:
    """The holder of token ``given``: the cluster admin, a published token's, or None."""
    given = given.strip()
    if admin_token is not None and _same(given, admin_token):
        return ADMIN
    holder: Principal | None = gateway.api_tokens.holder(given)
    return holder


async def login(request: Request) -> Response:
    """``GET /login`` shows the sign-in form, ``POST /login`` checks the token and sets the session cookie."""
    settings: Settings = request.app.state.gateway.settings
    if is_open(settings):
        return RedirectResponse("/", status_code=303)
    token = settings.api_token or None
    gateway = request.app.state.gateway
    if token is None and not len(gateway.api_tokens):
        return _login_page(LOCKED, form=False, status=401 if request.method == "POST" else 200)
    if request.method != "POST":
        return _login_page("", form=True)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return _login_page("That is not an API token: it is far too long.", form=True, status=413)
    given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()
    holder = holder_of(gateway, token, given) if given else None
    if holder is None:
        return _login_page(
            "That is not this gateway's API token, nor one published from a Secret.", form=True, status=401
        )
    published = None if token is not None and _same(given, token) else token_hash(given)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        await open_session(gateway.store, holder, published),
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    """``POST /logout`` ends the session in the store (on every replica) and clears the cookie."""
    await close_session(request.app.state.gateway.store, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")
    return response


def _login_page(message: str, *, form: bool, status: int = 200) -> HTMLResponse:
    return render("login.html", status=status, message=message, form_hidden="" if form else "hidden")
