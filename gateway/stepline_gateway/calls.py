"""Calls to function services over HTTP: build a signed protocol request, read the answer.

This is the gateway's hottest path, so it uses one pooled keep-alive aiohttp session (measured several
times faster than httpx's client under concurrency, see docs/performance.md). The answer is turned into
an ``Answer``: the function's output (200), its operations (206) or an error, retriable or not.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from stepline import signing
from stepline.protocol import REQUEST_VERSION, Header, ServerKind

from stepline_gateway.clock import Clock

_MAX_ERROR_TEXT = 2000
_IDLE_KEEPALIVE_S = 4.0


class SyncError(Exception):
    """An SDK app could not be reached or refused to sync."""


def queue_item_ref(work_id: int, lease_token: uuid.UUID) -> str:
    """``ctx.qi_id``: the work row and the lease that the call holds, ``<work id>:<lease token>``.

    The checkpoint API reads it back (``parse_queue_item_ref``) to find the call's row and to check that the
    call still holds it: a late checkpoint of a call whose lease was lost changes nothing.
    """
    return f"{work_id}:{lease_token}"


def parse_queue_item_ref(ref: str) -> tuple[int, uuid.UUID]:
    """The work id and lease token of a ``qi_id``; ValueError if it is not one the gateway gave out."""
    work_id, _, token = ref.partition(":")
    return int(work_id), uuid.UUID(token)


@dataclass(frozen=True)
class Call:
    """One protocol request: run ``function_id`` of ``run_id`` at ``step_id``."""

    run_id: str
    function_id: str
    url: str
    step_id: str
    attempt: int
    max_attempts: int
    event: dict[str, Any]
    memos: dict[str, Any]
    stack: list[str]
    # Names the leased work item to the checkpoint API (``ctx.qi_id``): see ``queue_item_ref``.
    qi_id: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "events": [self.event],
            "steps": self.memos,
            "ctx": {
                "run_id": self.run_id,
                "fn_id": self.function_id,
                "step_id": self.step_id,
                "attempt": self.attempt,
                "max_attempts": self.max_attempts,
                "qi_id": self.qi_id,
                "disable_immediate_execution": False,
                "use_api": False,
                "stack": {"stack": self.stack, "current": len(self.stack)},
            },
            "version": 2,
            "use_api": False,
        }


@dataclass(frozen=True)
class Answer:
    """What a call came back with. Exactly one of output (status 200), ops (206) or error is meaningful."""

    status: int
    output: Any = None
    ops: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    retriable: bool = True
    retry_at: datetime.datetime | None = None
    # The connection could not be made (refused, unknown host): nothing reached the function.
    unreachable: bool = False

    @property
    def completed(self) -> bool:
        return self.status == 200


def _retry_at(value: str | None, now: datetime.datetime) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return now + datetime.timedelta(seconds=float(value))
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _error_of(body: Any, fallback: str) -> dict[str, Any]:
    if isinstance(body, dict) and ("message" in body or "name" in body):
        return {
            "name": str(body.get("name") or "Error"),
            "message": str(body.get("message") or fallback),
            "stack": body.get("stack"),
        }
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return {"name": "Error", "message": f"{fallback}: {body['error']}", "stack": None}
    return {"name": "Error", "message": fallback, "stack": None}


class Caller:
    def __init__(
        self,
        clock: Clock,
        *,
        signing_key: str | None,
        timeout_s: float,
        max_connections: int = 256,
        server_kind: ServerKind = ServerKind.CLOUD,
    ) -> None:
        self._clock = clock
        self._signing_key = signing_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._server_kind = server_kind
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Idle connections are dropped before common servers drop theirs (uvicorn: 5 s): reusing one the
            # server is closing would lose the request and run its step a second time.
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=_IDLE_KEEPALIVE_S)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, call: Call) -> Answer:
        payload = call.body()
        headers = {
            "content-type": "application/json",
            Header.REQUEST_VERSION: REQUEST_VERSION,
            Header.SERVER_KIND: self._server_kind,
        }
        if self._signing_key:
            data = signing.canonical_dumps(payload)
            headers[Header.SIGNATURE] = signing.sign(data, self._signing_key)
        else:
            data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        params = {"fnId": call.function_id, "stepId": call.step_id}
        try:
            async with self._client().post(call.url, data=data, headers=headers, params=params) as response:
                raw = await response.read()
                return self._read(response.status, response.headers, raw, call.url)
        except TimeoutError:
            return Answer(
                status=0,
                error={
                    "name": "TimeoutError",
                    "stack": None,
                    "message": f"{call.url} did not answer within {self._timeout.total} s",
                },
            )
        except aiohttp.ClientError as err:
            return Answer(
                status=0,
                error={
                    "name": type(err).__name__,
                    "stack": None,
                    "message": f"could not reach {call.url}: {err}",
                },
                unreachable=isinstance(err, aiohttp.ClientConnectorError),
            )

    def _read(self, status: int, headers: Any, raw: bytes, url: str) -> Answer:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw[:_MAX_ERROR_TEXT].decode("utf-8", "replace")
        no_retry = headers.get(Header.NO_RETRY, "").lower() == "true"
        retry_at = _retry_at(headers.get(Header.RETRY_AFTER), self._clock.now())
        if status == 200:
            return Answer(status=200, output=body)
        if status == 206:
            items: list[Any] = body if isinstance(body, list) else [body]
            ops = [op for op in items if isinstance(op, dict) and isinstance(op.get("op"), str)]
            if ops and len(ops) == len(items):
                return Answer(status=206, ops=ops, retriable=not no_retry, retry_at=retry_at)
            return Answer(
                status=206, error=_error_of(None, f"{url} answered 206 without a list of operations")
            )
        fallback = f"{url} answered {status}" + (f": {body}" if isinstance(body, str) and body else "")
        return Answer(
            status=status, error=_error_of(body, fallback), retriable=not no_retry, retry_at=retry_at
        )

    async def request_sync(self, url: str) -> None:
        """Ask an SDK app to sync: ``PUT`` its serve URL; it then posts its functions to ``/fn/register``."""
        headers = {Header.SERVER_KIND: self._server_kind, "content-type": "application/json"}
        if self._signing_key:
            headers[Header.SIGNATURE] = signing.sign(b"", self._signing_key)
        try:
            async with self._client().put(url, headers=headers) as response:
                body = await response.text()
        except (TimeoutError, aiohttp.ClientError) as err:
            raise SyncError(f"could not reach the app at {url}: {err or type(err).__name__}") from None
        if response.status >= 300:
            raise SyncError(f"the app at {url} refused to sync ({response.status}): {body[:_MAX_ERROR_TEXT]}")
