"""The serve endpoint, framework-neutral: GET inspects, PUT syncs, POST runs a function call.

Adapters (asgi.py, fastapi.py, starlette.py, flask.py, django.py, wsgi.py) only translate their request
into ``Handler.handle`` and its Response back, and mark what they serve with ``stepline_handlers`` so that
``handlers_of`` (``stepline manifests``) finds the functions. This module checks signatures, finds the
function, and puts the protocol's headers on every answer.
"""

from __future__ import annotations

import dataclasses
import datetime
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from stepline.client import Client
from stepline.config import SDK_IDENTITY
from stepline.context import execute_call
from stepline.errors import ConfigError
from stepline.function import Function, with_failure_functions
from stepline.protocol import (
    DISCOVERY_STEP_ID,
    INSPECTION_SCHEMA_VERSION,
    REQUEST_VERSION,
    CallRequest,
    Header,
    QueryParam,
    encode_json,
    error_data,
    full_function_id,
    iso_utc,
)
from stepline.signing import ReplayGuard, SignatureError, sign, verify_request
from stepline.tracing import continued


@dataclasses.dataclass(frozen=True)
class Response:
    """An answer to the gateway, ready to send: JSON body, lower-case headers."""

    status: int
    headers: dict[str, str]
    body: bytes


class Handler:
    """Answers the gateway's requests for one client's functions."""

    def __init__(self, client: Client, functions: Iterable[Function], *, framework: str = "python") -> None:
        config = client.config
        if not config.dev and config.signing_key is None:
            raise ConfigError(
                "cloud mode needs a signing key to check the gateway's requests: set STEPLINE_SIGNING_KEY "
                "(or pass signing_key=...), or use dev mode (STEPLINE_DEV=1)"
            )
        self._client = client
        self._framework = framework
        self._functions = list(functions)
        # Every function served, failure functions too, by full id: what fnId names.
        self._served: dict[str, Function] = {}
        self._replays = ReplayGuard()
        for fn in with_failure_functions(self._functions, client.app_id):
            full_id = fn.full_id(client.app_id)
            if full_id in self._served:
                message = f"two functions have the id {fn.id!r}: function ids must be unique in an app"
                raise ConfigError(message)
            self._served[full_id] = fn

    @property
    def functions(self) -> list[Function]:
        """The functions given, without the failure functions they imply."""
        return list(self._functions)

    @property
    def app_id(self) -> str:
        return self._client.app_id

    @property
    def client(self) -> Client:
        return self._client

    async def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one request; ``headers`` has lower-case names."""
        config = self._client.config
        method = method.upper()
        answer_key = config.signing_key
        if method == "GET":
            return self._answer(200, self._inspection(), key=answer_key)
        if method not in ("POST", "PUT"):
            message = f"{method} is not served here: use GET, PUT or POST"
            return self._answer(405, {"error": message}, key=answer_key)
        if config.verifies_signatures:
            try:
                answer_key = self._verify(body, headers.get(Header.SIGNATURE.value))
                if method == "POST":
                    self._replays.admit(headers.get(Header.SIGNATURE.value))
            except SignatureError as err:
                return self._answer(401, {"error": f"request refused: {err}"}, key=answer_key)
        if method == "PUT":
            return await self._sync(url, headers, key=answer_key)
        with continued(headers):
            return await self._call(url, body, key=answer_key)

    def serve_url(self, request_url: str) -> str:
        """The URL the gateway calls: the request's, without its query, under ``serve_origin`` if set."""
        parts = urllib.parse.urlsplit(request_url)
        scheme, netloc = parts.scheme, parts.netloc
        origin = self._client.config.serve_origin
        if origin:
            if "://" in origin:
                parsed = urllib.parse.urlsplit(origin)
                scheme, netloc = parsed.scheme or scheme, parsed.netloc or netloc
            else:
                scheme, netloc = "https", origin.rstrip("/")
        return urllib.parse.urlunsplit((scheme, netloc, parts.path, "", ""))

    def _verify(self, body: bytes, header: str | None) -> str:
        """Check the request's signature; return the key that made it, so the answer is signed alike."""
        refusal = SignatureError("no signing key is configured")
        for key in self._client.config.signing_keys:
            try:
                verify_request(body, header, [key])
            except SignatureError as err:
                refusal = err
                continue
            return key
        raise refusal

    def _inspection(self) -> dict[str, Any]:
        config = self._client.config
        return {
            "function_count": len(self._functions),
            "has_event_key": config.event_key is not None,
            "has_signing_key": config.signing_key is not None,
            "has_signing_key_fallback": config.signing_key_fallback is not None,
            "mode": config.mode,
            "schema_version": INSPECTION_SCHEMA_VERSION,
        }

    async def _sync(self, url: str, headers: Mapping[str, str], *, key: str | None) -> Response:
        mode = self._client.config.mode
        server_kind = headers.get(Header.SERVER_KIND.value)
        if server_kind and server_kind != mode:
            message = f"sync refused: the server is in {server_kind} mode but this app is in {mode} mode"
            return self._answer(400, {"error": message}, key=key)
        sync_id = _query(url).get(QueryParam.SYNC_ID.value)
        answer = await self._client.sync(
            self._functions, self.serve_url(url), framework=self._framework, sync_id=sync_id
        )
        return self._answer(200 if answer.ok else answer.status, answer.body, key=key)

    async def _call(self, url: str, body: bytes, *, key: str | None) -> Response:
        query = _query(url)
        fn_id = query.get(QueryParam.FUNCTION_ID.value)
        if not fn_id:
            return self._answer(400, {"error": "the fnId query parameter is missing"}, key=key)
        fn = self._served.get(fn_id) or self._served.get(full_function_id(self._client.app_id, fn_id))
        if fn is None:
            message = f"function {fn_id!r} is not served here: sync the app again (PUT) to update the gateway"
            return self._answer(404, {"error": message}, key=key, no_retry=True)
        try:
            request = CallRequest.model_validate_json(body)
        except pydantic.ValidationError as err:
            return self._answer(400, {"error": f"the call's body is not valid: {err}"}, key=key)
        if request.use_api:
            message = "use_api is not supported: send the events and step memos in the call's body"
            return self._answer(500, error_data("UnsupportedCallError", message), key=key, no_retry=True)
        step_id = query.get(QueryParam.STEP_ID.value)
        target = None if step_id in (None, "", DISCOVERY_STEP_ID) else step_id
        result = await execute_call(fn, request, target=target, client=self._client)
        return self._finish(
            result.status, result.body, key=key, no_retry=result.no_retry, retry_after=result.retry_after
        )

    def _answer(self, status: int, body: Any, *, key: str | None, no_retry: bool = False) -> Response:
        return self._finish(status, encode_json(body), key=key, no_retry=no_retry)

    def _finish(
        self,
        status: int,
        body: bytes,
        *,
        key: str | None,
        no_retry: bool = False,
        retry_after: datetime.datetime | None = None,
    ) -> Response:
        headers = {
            "content-type": "application/json",
            Header.SDK.value: SDK_IDENTITY,
            Header.REQUEST_VERSION.value: REQUEST_VERSION,
            Header.FRAMEWORK.value: self._framework,
        }
        if no_retry:
            headers[Header.NO_RETRY.value] = "true"
        if retry_after is not None:
            headers[Header.RETRY_AFTER.value] = iso_utc(retry_after)
        if key is not None and not self._client.config.dev:
            headers[Header.SIGNATURE.value] = sign(body, key)
        return Response(status, headers, body)


# The attribute by which adapters mark what they serve (an app, a view) with the handlers behind it.
HANDLERS_ATTRIBUTE = "stepline_handlers"


def mark_served(served: Any, handler: Handler) -> None:
    """Remember on ``served`` (an app, a view function) that ``handler`` answers there."""
    handlers: list[Handler] = getattr(served, HANDLERS_ATTRIBUTE, None) or []
    setattr(served, HANDLERS_ATTRIBUTE, [*handlers, handler])


def handlers_of(served: Any) -> list[Handler]:
    """The handlers behind ``served``: a Handler, an app or view an adapter marked, a Django URL pattern
    (its view), or a list of these."""
    if isinstance(served, Handler):
        return [served]
    if isinstance(served, list | tuple):
        return [handler for item in served for handler in handlers_of(item)]
    marked: list[Handler] | None = getattr(served, HANDLERS_ATTRIBUTE, None)
    if marked:
        return list(marked)
    view = getattr(served, "callback", None)  # a Django URLPattern
    return handlers_of(view) if view is not None and view is not served else []


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
