"""The Client: an app's identity and keys, its functions' decorator, and its calls to the gateway.

It sends events (``POST /e/<event key>``) and syncs the app (``POST /fn/register``) over one pooled httpx
client; answering the gateway's calls is handler.py's job, which reads the client's config.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import httpx

from stepline import config as config_
from stepline.background import LOOP, on_loop
from stepline.checkpoint import Poster, StepDurations
from stepline.errors import SendEventError
from stepline.flow import (
    BatchEvents,
    Concurrency,
    Debounce,
    FlowControl,
    Priority,
    RateLimit,
    RetryPolicy,
    Singleton,
    Throttle,
    Timeouts,
)
from stepline.function import (
    CancelSpec,
    Checkpoint,
    CheckpointSetting,
    Function,
    FunctionHandler,
    TriggerSpec,
    parse_cancel,
    parse_triggers,
    resolve_checkpoint,
    with_failure_functions,
)
from stepline.protocol import SYNC_PAYLOAD_VERSION, Event, Header, QueryParam, encode_json
from stepline.signing import bearer_token

SEND_TIMEOUT_S = 30.0

EventLike: TypeAlias = Event | Mapping[str, Any]
# ``concurrency=5``, one ``Concurrency`` or up to two of them.
ConcurrencySpec: TypeAlias = int | Concurrency | Sequence[Concurrency]


@dataclasses.dataclass(frozen=True)
class SyncAnswer:
    """The gateway's answer to a sync: its HTTP status and JSON body (``{"error": ...}`` on failure)."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status < 400


class Client:
    """An app as the gateway knows it; settings left out come from the environment (see config.py).

    ``checkpoint``: checkpoint mode for the app's functions (``stepline.Checkpoint`` settings, True for the
    defaults, False for off); a function may say otherwise. Unset, ``STEPLINE_CHECKPOINT`` decides (on).
    """

    def __init__(
        self,
        app_id: str,
        *,
        gateway_url: str | None = None,
        event_key: str | None = None,
        signing_key: str | None = None,
        signing_key_fallback: str | None = None,
        dev: bool | None = None,
        serve_origin: str | None = None,
        checkpoint: CheckpointSetting | None = None,
    ) -> None:
        self.config = config_.resolve(
            app_id=app_id,
            gateway_url=gateway_url,
            event_key=event_key,
            signing_key=signing_key,
            signing_key_fallback=signing_key_fallback,
            dev=dev,
            serve_origin=serve_origin,
            checkpoint=None if checkpoint is None else checkpoint is not False,
        )
        self._checkpoint: CheckpointSetting = self.config.checkpoint if checkpoint is None else checkpoint
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._poster: Poster | None = None
        # How long each step last ran here: the flush policy posts before a step known to be long.
        self.step_durations = StepDurations()

    @property
    def app_id(self) -> str:
        return self.config.app_id

    def __repr__(self) -> str:
        config = self.config
        return f"Client(app_id={config.app_id!r}, gateway_url={config.gateway_url!r}, mode={config.mode})"

    def function(
        self,
        *,
        id: str,
        trigger: TriggerSpec,
        retries: int = 4,
        name: str | None = None,
        cancel_on: Sequence[CancelSpec] = (),
        on_failure: FunctionHandler | None = None,
        checkpoint: CheckpointSetting | None = None,
        concurrency: ConcurrencySpec | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch_events: BatchEvents | None = None,
        priority: Priority | None = None,
        idempotency: str | None = None,
        singleton: Singleton | None = None,
        timeouts: Timeouts | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> Callable[[FunctionHandler], Function]:
        """Decorate ``async def fn(ctx: stepline.Context)`` to make it a durable function.

        ``cancel_on``: events that cancel a run, as ``stepline.Cancel`` or mappings such as
        ``{"event": "order/cancelled", "match": "data.order_id", "timeout": "1h"}``.
        ``on_failure``: ``async def handler(ctx)`` run once when a run of this function fails for good;
        served as the function ``<id>-failure``, its ``ctx.event`` is the ``inngest/function.failed`` event
        (data: ``function_id``, ``run_id``, ``error`` {name, message, stack}, ``event`` the original event).
        ``checkpoint``: this function's checkpoint mode (``stepline.Checkpoint``, True or False), when it
        should differ from the client's.

        Flow control, with Inngest's semantics (docs/flow-control.md), typed by the models of
        ``stepline.flow``: ``concurrency`` (a number, a ``Concurrency`` or two), ``throttle``, ``rate_limit``,
        ``debounce``, ``batch_events``, ``priority``, ``idempotency`` (a CEL key), ``singleton``,
        ``timeouts``; ``retry_policy``: the backoff between attempts and the longest one call may take.
        A setting out of bounds raises ``pydantic.ValidationError`` here, at import time.
        """
        triggers = parse_triggers(trigger)
        cancel = parse_cancel(cancel_on)
        if isinstance(concurrency, Concurrency):
            concurrency = [concurrency]
        flow = FlowControl.model_validate(
            {
                "concurrency": [] if concurrency is None else concurrency,
                "throttle": throttle,
                "rate_limit": rate_limit,
                "debounce": debounce,
                "batch_events": batch_events,
                "priority": priority,
                "idempotency": idempotency,
                "singleton": singleton,
                "timeouts": timeouts,
            }
        )

        def decorate(handler: FunctionHandler) -> Function:
            return Function(
                id=id,
                handler=handler,
                triggers=triggers,
                retries=retries,
                name=name,
                cancel_on=cancel,
                on_failure=on_failure,
                checkpoint=checkpoint,
                flow=flow,
                retry_policy=retry_policy,
            )

        return decorate

    def checkpoint_settings(self, function: Function) -> Checkpoint | None:
        """The checkpoint settings in force for ``function`` (None: it answers after every step)."""
        return resolve_checkpoint(self._checkpoint if function.checkpoint is None else function.checkpoint)

    @property
    def http(self) -> httpx.AsyncClient:
        """The pooled HTTP client to the gateway, made on first use; ``aclose`` closes it."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=SEND_TIMEOUT_S)
            self._http_loop = asyncio.get_running_loop()
        return self._http

    @property
    def checkpoint_poster(self) -> Poster:
        """The pooled connection to the gateway's checkpoint API, made on first use; ``aclose`` closes it."""
        if self._poster is None:
            self._poster = Poster()
        return self._poster

    async def aclose(self) -> None:
        """Close the pooled connections, each on the event loop that opened it (a sync framework's are
        on the SDK's loop thread)."""
        http, self._http = self._http, None
        if http is not None:
            await on_loop(self._http_loop, http.aclose())
        poster, self._poster = self._poster, None
        if poster is not None:
            await poster.close()

    def send_sync(self, events: EventLike | Sequence[EventLike]) -> list[str]:
        """``send`` for synchronous code (a Flask or Django view): it blocks until the gateway answers."""
        return LOOP.run(self.send(events))

    async def send(self, events: EventLike | Sequence[EventLike]) -> list[str]:
        """Send one event or several; return the ids the gateway gave them, in order."""
        batch = [events] if isinstance(events, Event | Mapping) else list(events)
        # No ``ts`` is filled in: the gateway stamps the time of arrival, while a ``ts`` in the future would
        # delay the runs (by the clock skew between the machines, at least).
        body = [Event.model_validate(event).model_dump(exclude_none=True) for event in batch]
        url = f"{self.config.gateway_url}/e/{self.config.event_key_or_dev}"
        try:
            response = await self.http.post(url, content=encode_json(body), headers=self._headers())
        except httpx.HTTPError as err:
            raise SendEventError(f"could not reach the gateway at {url}: {err}") from err
        answer = _json_object(response)
        if response.status_code >= 400:
            message = answer.get("error") or response.text or response.reason_phrase
            raise SendEventError(f"the gateway refused the events ({response.status_code}): {message}")
        ids = answer.get("ids")
        if not isinstance(ids, list):
            raise SendEventError(f"the gateway's answer has no list of event ids: {response.text[:200]}")
        return [str(event_id) for event_id in ids]

    def function_configs(self, functions: Iterable[Function], serve_url: str) -> list[dict[str, Any]]:
        """The ``functions`` of a sync payload, each called at ``serve_url``; failure functions included."""
        served = with_failure_functions(list(functions), self.app_id)
        return [
            fn.config(app_id=self.app_id, serve_url=serve_url, checkpoint=self.checkpoint_settings(fn))
            for fn in served
        ]

    def sync_payload(
        self, functions: Iterable[Function], serve_url: str, *, framework: str
    ) -> dict[str, Any]:
        """The body of ``POST /fn/register``, as the official SDKs send it."""
        return {
            "appname": self.app_id,
            "deployType": "ping",
            "framework": framework,
            "functions": self.function_configs(functions, serve_url),
            "sdk": config_.SDK_IDENTITY,
            "url": serve_url,
            "v": SYNC_PAYLOAD_VERSION,
        }

    async def sync(
        self,
        functions: Iterable[Function],
        serve_url: str,
        *,
        framework: str = "python",
        sync_id: str | None = None,
    ) -> SyncAnswer:
        """Register the functions with the gateway, trying the fallback key if the first is refused."""
        body = encode_json(self.sync_payload(functions, serve_url, framework=framework))
        url = f"{self.config.gateway_url}/fn/register"
        params = {QueryParam.SYNC_ID.value: sync_id} if sync_id else None
        keys: list[str | None] = [*self.config.signing_keys] or [None]
        for key in keys:
            headers = self._headers(framework=framework)
            if key is not None:
                headers[Header.AUTHORIZATION] = f"Bearer {bearer_token(key)}"
            try:
                response = await self.http.post(url, content=body, headers=headers, params=params)
            except httpx.HTTPError as err:
                return SyncAnswer(500, {"error": f"could not reach the gateway at {url}: {err}"})
            if response.status_code not in (401, 403):
                break
        answer = _json_object(response)
        if response.status_code >= 400:
            message = answer.get("error") or response.text or response.reason_phrase
            return SyncAnswer(response.status_code, {"error": f"the gateway refused the sync: {message}"})
        return SyncAnswer(response.status_code, answer)

    def _headers(self, *, framework: str | None = None) -> dict[str, str]:
        headers = {"content-type": "application/json", Header.SDK.value: config_.SDK_IDENTITY}
        if framework is not None:
            headers[Header.FRAMEWORK.value] = framework
        return headers


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
