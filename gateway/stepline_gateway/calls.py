"""Calls to function services over HTTP: build a signed protocol request, read the answer.

This is the gateway's hottest path, so it uses one pooled keep-alive aiohttp session (measured several
times faster than httpx's client under concurrency, see docs/performance.md). The answer is turned into
an ``Answer``: the function's output (200), its operations (206) or an error, retriable or not. Its body is
read up to ``max_answer_bytes`` (a longer one is a failed attempt), parsed without risk of deep recursion,
and its error text cleaned of what Postgres cannot store; ``retry-after`` is read as seconds, an HTTP date or
an ISO 8601 time, ignored when negative or unreadable and cut to ``retry_after_max_s``.

With a signing key, each call's ``ctx.nonce`` is fresh, so that a service can refuse a captured call sent
again within the signature's time window (docs/protocol.md), and every answer must carry a valid
``x-inngest-signature`` over its raw body by the current or the previous key: an unsigned or wrongly signed
answer is a failed attempt (retried as errors are), whatever its status, body or headers say. The keys are
those of the function's namespace (signing_keys.py: its own, else the cluster's), looked up in memory.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from stepline import signing
from stepline.protocol import REQUEST_VERSION, Header, ServerKind
from stepline_store.identity import DEFAULT_NAMESPACE, split_function_id, wire_function_id

from stepline_gateway import storable
from stepline_gateway.clock import Clock
from stepline_gateway.signing_keys import SigningKeys

_MAX_ERROR_TEXT = 2000
# Errors are shown, not used: long messages and stacks are cut, so that a step's error stays readable.
MAX_ERROR_MESSAGE = 16 * 1024
MAX_ERROR_STACK = 64 * 1024
_IDLE_KEEPALIVE_S = 4.0
_WORK_ID = re.compile(r"[0-9]{1,18}")


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
    if not _WORK_ID.fullmatch(work_id):
        raise ValueError(f"{work_id!r} is not a work id")
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
    # Bytes of ``memos`` as JSON: the run's state, kept within its limit (answers.AnswerLimits).
    state_bytes: int = 0
    # A batch run's events in order (``event`` is the first); None for a run of one event.
    events: list[dict[str, Any]] | None = None

    def body(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "events": self.events if self.events is not None else [self.event],
            "steps": self.memos,
            "ctx": {
                "run_id": self.run_id,
                "fn_id": wire_function_id(self.function_id),
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


def wire_json(payload: dict[str, Any]) -> bytes:
    """A call's body as compact JSON: by orjson (a tenth of the standard library's time on a call's body),
    by the standard library for what orjson does not encode (integers beyond 64 bits, which a step's JSON
    output may hold). The payload is decoded JSON (the run's event and memos from Postgres), so it holds no
    NaN; a number too large for a double, decoded as infinity, is written null (the standard library would
    write ``Infinity``, which is not JSON)."""
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")


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
    # The body as parsed, with its size and whether its bytes show it clean (answers.AnswerLimits).
    document: storable.Document | None = field(default=None, compare=False)

    @property
    def completed(self) -> bool:
        return self.status == 200 and self.error is None


def parse_retry_after(
    value: str | None, now: datetime.datetime, *, at_most_s: float
) -> datetime.datetime | None:
    """When ``retry-after`` says to try again: seconds, an HTTP date or an ISO 8601 time. None when absent,
    unreadable, negative, NaN or in the past; a time later than ``at_most_s`` from now (infinity included)
    is cut to it."""
    if not value:
        return None
    latest = now + datetime.timedelta(seconds=at_most_s)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or seconds < 0:
            return None
        return latest if seconds >= at_most_s else now + datetime.timedelta(seconds=seconds)
    try:
        parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return min(parsed, latest) if parsed > now else None


def error_json(name: Any, message: Any, stack: Any) -> dict[str, Any]:
    """An error as steps and runs keep it: strings Postgres stores (NUL characters replaced), cut short."""
    return {
        "name": storable.clean_text(name or "Error", limit=256),
        "message": storable.clean_text(message, limit=MAX_ERROR_MESSAGE),
        "stack": None if stack is None else storable.clean_text(stack, limit=MAX_ERROR_STACK),
    }


def _error_of(body: Any, fallback: str) -> dict[str, Any]:
    if isinstance(body, dict) and ("message" in body or "name" in body):
        return error_json(body.get("name"), body.get("message") or fallback, body.get("stack"))
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return error_json("Error", f"{fallback}: {body['error']}", None)
    return error_json("Error", fallback, None)


class Caller:
    def __init__(
        self,
        clock: Clock,
        *,
        keys: SigningKeys,
        timeout_s: float,
        max_connections: int = 256,
        server_kind: ServerKind = ServerKind.CLOUD,
        max_answer_bytes: int = 8 * 1024 * 1024,
        retry_after_max_s: float = 86400.0,
    ) -> None:
        self._clock = clock
        self._keys = keys
        self._max_answer_bytes = max_answer_bytes
        self._retry_after_max_s = retry_after_max_s
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

    async def call(
        self, call: Call, *, traceparent: str | None = None, timeout_s: float | None = None
    ) -> Answer:
        """Make ``call``; ``traceparent`` (W3C) names the call's span to the service when tracing is on;
        ``timeout_s`` (the function's ``retryPolicy.timeout``) replaces the gateway's call timeout."""
        payload = call.body()
        headers = {
            "content-type": "application/json",
            Header.REQUEST_VERSION: REQUEST_VERSION,
            Header.SERVER_KIND: self._server_kind,
        }
        if traceparent:
            headers["traceparent"] = traceparent
        namespace, wire_id = split_function_id(call.function_id)
        keys = self._keys.of(namespace)
        if keys is not None:
            payload["ctx"]["nonce"] = secrets.token_hex(16)
            data = signing.canonical_dumps(payload)
            headers[Header.SIGNATURE] = signing.sign(data, keys.current)
        else:
            data = wire_json(payload)
        params = {"fnId": wire_id, "stepId": call.step_id}
        timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._client().post(
                call.url, data=data, headers=headers, params=params, timeout=timeout
            ) as response:
                raw = await self._body(response)
                if raw is None:
                    limit = self._max_answer_bytes
                    return Answer(
                        status=response.status,
                        error=error_json(
                            "AnswerTooLarge",
                            f"{call.url} answered with more than {limit} bytes (the limit of an answer): "
                            "return less from steps (store large results elsewhere and return a reference)",
                            None,
                        ),
                    )
                if keys is not None:
                    refusal = self._unsigned(response, raw, call.url, keys.verifying(), namespace)
                    if refusal is not None:
                        return refusal
                return self._read(response.status, response.headers, raw, call.url)
        except TimeoutError:
            return Answer(
                status=0,
                error={
                    "name": "TimeoutError",
                    "stack": None,
                    "message": f"{call.url} did not answer within {timeout.total:g} s"
                    + ("" if timeout_s is None else " (the function's retryPolicy.timeout)"),
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

    def _unsigned(
        self, response: aiohttp.ClientResponse, raw: bytes, url: str, keys: list[str], namespace: str
    ) -> Answer | None:
        """None when the answer is signed by one of ``keys``, else the failed attempt it makes."""
        try:
            signing.verify(raw, response.headers.get(Header.SIGNATURE), keys)
        except signing.SignatureError as err:
            message = (
                f"{url} answered {response.status} without a valid signature ({err}), so the answer was "
                f"not used: the service must sign its answers, as the Inngest SDKs do, with the signing key "
                f"of namespace {namespace} (its Secret labelled stepline.dev/signing-key=true, else the "
                "gateway's STEPLINE_SIGNING_KEY) as its INNGEST_SIGNING_KEY"
            )
            return Answer(status=response.status, error=error_json("SignatureError", message, None))
        return None

    async def _body(self, response: aiohttp.ClientResponse) -> bytes | None:
        """The answer's body, or None when it is longer than ``max_answer_bytes`` (it is not read further)."""
        limit = self._max_answer_bytes
        if response.content_length is not None and response.content_length > limit:
            return None
        chunks = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _read(self, status: int, headers: Any, raw: bytes, url: str) -> Answer:
        document = None
        try:
            document = storable.parse_document(raw) if raw else None
            body = document.value if document is not None else None
        except storable.TooDeep as err:
            message = f"{url} answered {status} with JSON that cannot be stored: {err}"
            return Answer(status=status, error=error_json("UnstorableAnswer", message, None))
        except storable.InvalidJson:
            text = raw[:_MAX_ERROR_TEXT].decode("utf-8", "replace")
            body = storable.clean_text(text, limit=_MAX_ERROR_TEXT)
        no_retry = headers.get(Header.NO_RETRY, "").lower() == "true"
        retry_at = parse_retry_after(
            headers.get(Header.RETRY_AFTER), self._clock.now(), at_most_s=self._retry_after_max_s
        )
        if status == 200:
            return Answer(status=200, output=body, document=document)
        if status == 206:
            items: list[Any] = body if isinstance(body, list) else [body]
            ops = [op for op in items if isinstance(op, dict) and isinstance(op.get("op"), str)]
            if ops and len(ops) == len(items):
                return Answer(
                    status=206, ops=ops, retriable=not no_retry, retry_at=retry_at, document=document
                )
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
        keys = self._keys.of(DEFAULT_NAMESPACE)
        if keys is not None:
            headers[Header.SIGNATURE] = signing.sign(b"", keys.current)
        try:
            async with self._client().put(url, headers=headers) as response:
                body = await response.text()
        except (TimeoutError, aiohttp.ClientError) as err:
            raise SyncError(f"could not reach the app at {url}: {err or type(err).__name__}") from None
        if response.status >= 300:
            raise SyncError(f"the app at {url} refused to sync ({response.status}): {body[:_MAX_ERROR_TEXT]}")
