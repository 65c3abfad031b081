"""Webhooks: ``POST /webhooks/{namespace}/{name}`` checks a provider's request and stores its events.

Every replica keeps the published webhooks in memory (``WebhookTable``: secrets opened with
``STEPLINE_SECRETS_KEY``, verifiers and transforms built once), reloaded on ``NOTIFY stepline_webhooks`` and
on the routing table's slow timer. A request is verified (``verification``), read and transformed
(``transforms``), and its events go through the same ``Ingestor.ingest`` as ``POST /e``, in one transaction
with the record of the delivery. A refused request stores no event, only its delivery (accepted or refused,
and why), which the dashboard shows; deliveries are pruned with the history and kept to ``KEEP_DELIVERIES``
per webhook. Nothing here logs or answers a secret, a signature, a header's value or a body.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from stepline.webhook import webhook_path
from stepline_store import queries
from stepline_store import webhooks as published
from stepline_store.errors import PoolBusy
from stepline_store.identity import DEFAULT_NAMESPACE
from stepline_store.pool import Store
from stepline_store.queries import ListWebhookDeliveriesRow
from stepline_store.sealing import SealBroken, Sealer

from stepline_gateway import verification
from stepline_gateway.access import principal
from stepline_gateway.clock import Clock
from stepline_gateway.errors import BadRequest, Unauthorized
from stepline_gateway.events import refuse_reserved
from stepline_gateway.ingest import Ingestor
from stepline_gateway.metrics import Metrics
from stepline_gateway.routing import ExpressionError
from stepline_gateway.settings import Settings
from stepline_gateway.transforms import Incoming, Transform, read_body

log = logging.getLogger(__name__)

# Deliveries kept per webhook (the newest), whatever the retention period.
KEEP_DELIVERIES = 1000
# A delivery's reason is a message of ours, or CEL's; kept to this length.
MAX_REASON_LENGTH = 2000
# What asyncpg raises when Postgres is away: answered 503, so that the provider retries the delivery.
_UNAVAILABLE = (OSError, ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Unavailable(Exception):
    """The webhook cannot take requests now (503): its secret cannot be opened, or the database is away."""


@dataclass(frozen=True)
class Endpoint:
    """One published webhook as this gateway serves it."""

    row: published.PublishedWebhook
    verifier: verification.Verifier | None
    transform: Transform | None
    problem: str | None

    @property
    def label(self) -> str:
        return f"{self.row.namespace}/{self.row.name}"

    @property
    def reaches(self) -> str:
        """The namespace whose functions, waits and cancel rules this webhook's events reach: a Webhook
        resource's own; for manifest files, ``default``, where every manifest's Function lives."""
        if self.row.source == published.MANIFEST_SOURCE:
            return DEFAULT_NAMESPACE
        return self.row.namespace

    def to_json(self) -> dict[str, Any]:
        """What the API and the dashboard show: never the secrets, only how many there are."""
        row = self.row
        return {
            "namespace": row.namespace,
            "name": row.name,
            "url": webhook_path(row.namespace, row.name),
            "verify": row.scheme,
            "options": row.options,
            "secrets": len(row.secrets),
            "transform": row.transform,
            "source": row.source,
            "ready": self.problem is None,
            "problem": self.problem,
        }


def build_endpoint(row: published.PublishedWebhook, sealer: Sealer | None) -> Endpoint:
    """Open the secrets and build the verifier and transform; what fails is the endpoint's ``problem``."""
    try:
        if row.secrets and sealer is None:
            raise SealBroken(
                "this gateway has no STEPLINE_SECRETS_KEY to open the webhook's secret: give it the same "
                "keys as the operator"
            )
        secrets = [sealer.open(token) for token in row.secrets] if sealer is not None else []
        checker = verification.verifier(row.scheme, row.options, secrets)
    except SealBroken as err:
        return Endpoint(row, None, None, str(err))
    except (ValueError, KeyError) as err:
        return Endpoint(row, None, None, f"the published secret or options cannot be used: {err}")
    try:
        transform = Transform(row.transform, namespace=row.namespace, name=row.name, scheme=row.scheme)
    except ExpressionError as err:
        return Endpoint(row, checker, None, f"spec.transform: {err}")
    return Endpoint(row, checker, transform, None)


class WebhookTable:
    """The published webhooks by (namespace, name)."""

    def __init__(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self.endpoints = {(e.row.namespace, e.row.name): e for e in endpoints}

    def get(self, namespace: str, name: str) -> Endpoint | None:
        return self.endpoints.get((namespace, name))

    def __len__(self) -> int:
        return len(self.endpoints)


def _headers(request: Request) -> dict[str, str]:
    """Header names in lower case; a header sent more than once is its values joined by ', '."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.headers.raw:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the body is {declared} bytes, over the limit of {limit} bytes", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the body is over the limit of {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _outcome(status: int) -> str:
    return {401: "unauthorized", 413: "too_large", 503: "unavailable"}.get(status, "bad_request")


class Webhooks:
    """The gateway's webhooks: the table, its reloads, the requests, the deliveries."""

    def __init__(
        self,
        *,
        store: Store,
        ingest_store: Store | None = None,
        ingestor: Ingestor,
        clock: Clock,
        metrics: Metrics,
        settings: Settings,
        sealer: Sealer | None,
    ) -> None:
        self._store = store
        # Deliveries and their events go through ingest's pool (service.py), at most ``ingest_wait_s`` waited.
        self._ingest_store = ingest_store or store
        self._ingestor = ingestor
        self._clock = clock
        self._metrics = metrics
        self._settings = settings
        self._sealer = sealer
        self.table = WebhookTable()
        self.loaded = False

    @property
    def sealer(self) -> Sealer | None:
        return self._sealer

    async def reload(self) -> None:
        rows = await published.load_webhooks(self._store.pool)
        table = WebhookTable(build_endpoint(row, self._sealer) for row in rows)
        for endpoint in table.endpoints.values():
            if endpoint.problem is not None:
                log.error("webhook %s cannot take requests: %s", endpoint.label, endpoint.problem)
        self.table = table
        self.loaded = True

    async def publish(self, rows: list[published.PublishedWebhook], *, source: str) -> int:
        """Make ``rows`` the webhooks of ``source`` (manifest files); answer how many changed."""
        try:
            async with self._store.transaction() as conn:
                changed = await published.publish_webhooks(conn, rows, source=source, replace=True)
        except published.WebhookTaken as err:
            raise BadRequest(str(err)) from None
        if changed:
            await self.reload()
        return changed

    async def receive(self, request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        endpoint = self.table.get(namespace, name)
        if endpoint is None:
            self._metrics.webhook_deliveries.labels("", "", "unknown_webhook").inc()
            return JSONResponse(
                {
                    "error": f"no webhook {namespace}/{name}: apply a Webhook named {name} in namespace "
                    f"{namespace} (kubectl get webhooks -n {namespace}), or check the URL"
                },
                status_code=404,
            )
        now = self._clock.now()
        try:
            return await self._accept(endpoint, request, now)
        except (BadRequest, Unauthorized, Unavailable) as refusal:
            status = refusal.status if isinstance(refusal, BadRequest) else 401
            status = 503 if isinstance(refusal, Unavailable) else status
            reason = str(refusal)
            await self._record_refusal(endpoint, now, status, reason)
            self._metrics.webhook_deliveries.labels(namespace, name, _outcome(status)).inc()
            log.info("webhook %s refused (%d): %s", endpoint.label, status, reason)
            headers = {"Retry-After": "30"} if status == 503 else None
            return JSONResponse({"error": reason}, status_code=status, headers=headers)

    async def _accept(self, endpoint: Endpoint, request: Request, now: datetime.datetime) -> Response:
        if endpoint.problem is not None or endpoint.verifier is None or endpoint.transform is None:
            raise Unavailable(f"this webhook cannot take requests now: {endpoint.problem}")
        body = await _read_body(request, self._settings.max_body_bytes)
        headers = _headers(request)
        signed_by = endpoint.verifier.verify(
            verification.SignedRequest(body=body, headers=headers, now=now.timestamp())
        )
        incoming = Incoming(
            body=read_body(body, headers.get("content-type", "")),
            headers=headers,
            query=dict(request.query_params.multi_items()),
            method=request.method,
        )
        if endpoint.row.scheme == "slack" and _is_slack_challenge(incoming.body):
            await self._record(
                endpoint, now, True, 200, "Slack URL verification: the challenge was answered", []
            )
            self._metrics.webhook_deliveries.labels(
                endpoint.row.namespace, endpoint.row.name, "accepted"
            ).inc()
            return JSONResponse({"challenge": incoming.body["challenge"]})
        events = endpoint.transform.events(incoming, max_event_bytes=self._settings.max_event_bytes)
        # A provider's request never speaks for the gateway, in dev mode neither.
        refuse_reserved(events)
        reason = "accepted" if events else "accepted: the transform gave no event"
        if signed_by == 1:
            reason += (
                "; signed with the previous secret (previousSecretRef): finish the rotation at the provider"
            )
        try:
            async with self._ingest_store.transaction(within_s=self._settings.ingest_wait_s) as conn:
                result = (
                    await self._ingestor.ingest(events, on=conn, namespace=endpoint.reaches)
                    if events
                    else None
                )
                if result is not None and events and not result.new_ids:
                    reason = "duplicate: every event id was received before, nothing new started"
                ids = result.ids if result is not None else []
                await self._record(endpoint, now, True, 200, reason, ids, on=conn)
        except PoolBusy as err:
            raise Unavailable(
                f"the gateway is busy taking in events ({err}): nothing was stored, try again"
            ) from None
        except _UNAVAILABLE as err:
            raise Unavailable(
                f"the events could not be stored ({type(err).__name__}: the database is away or refused "
                "them): nothing was stored, try again"
            ) from None
        outcome = "duplicate" if reason.startswith("duplicate") else "accepted"
        self._metrics.webhook_deliveries.labels(endpoint.row.namespace, endpoint.row.name, outcome).inc()
        if result is not None:
            self._metrics.events_ingested(len(result.new_ids))
        log.info(
            "webhook %s: %s, %d event(s), %d run(s) started",
            endpoint.label,
            outcome,
            len(events),
            result.runs_created if result is not None else 0,
        )
        return JSONResponse({"ids": ids, "status": 200})

    async def _record(
        self,
        endpoint: Endpoint,
        now: datetime.datetime,
        accepted: bool,
        status: int,
        reason: str,
        event_ids: list[str],
        *,
        on: Any = None,
    ) -> None:
        await queries.record_webhook_delivery(
            self._store,
            namespace=endpoint.row.namespace,
            name=endpoint.row.name,
            received_at=now,
            accepted=accepted,
            http_status=status,
            reason=reason.replace("\x00", "\\u0000")[:MAX_REASON_LENGTH],
            event_ids=event_ids,
            on=on,
        )

    async def _record_refusal(
        self, endpoint: Endpoint, now: datetime.datetime, status: int, reason: str
    ) -> None:
        try:
            await self._record(endpoint, now, False, status, reason, [])
        except _UNAVAILABLE as err:
            log.warning("webhook %s: the refused delivery is not recorded: %s", endpoint.label, err)

    async def deliveries(
        self, *, webhook: tuple[str, str] | None, limit: int, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest deliveries of ``webhook``, else of ``namespace``'s webhooks, else of every one."""
        rows: Sequence[ListWebhookDeliveriesRow]
        if webhook is None and namespace is not None:
            rows = await queries.list_deliveries_in_namespace(self._store, namespace=namespace, limit=limit)
        elif webhook is None:
            rows = await queries.list_webhook_deliveries(self._store, limit=limit)
        else:
            rows = await queries.list_deliveries_of_webhook(
                self._store, namespace=webhook[0], name=webhook[1], limit=limit
            )
        return [
            {
                "id": row["id"],
                "namespace": row["namespace"],
                "name": row["name"],
                "received_at": row["received_at"].isoformat(),
                "accepted": row["accepted"],
                "status": row["status"],
                "reason": row["reason"],
                "event_ids": list(row["event_ids"]),
            }
            for row in rows
        ]

    async def prune(self, retention: datetime.timedelta) -> int:
        """Delete deliveries older than ``retention`` (by the database's clock), and those beyond the newest
        ``KEEP_DELIVERIES`` of each webhook."""
        status = await queries.prune_webhook_deliveries(
            self._store,
            clock_offset=self._clock.offset(),
            retention=retention,
            keep_per_webhook=KEEP_DELIVERIES,
        )
        return int(status.split()[-1])


def _is_slack_challenge(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and body.get("type") == "url_verification"
        and isinstance(body.get("challenge"), str)
    )


def _webhooks(request: Request) -> Webhooks:
    webhooks: Webhooks = request.app.state.gateway.webhooks
    return webhooks


async def receive_webhook(request: Request) -> Response:
    return await _webhooks(request).receive(request)


async def list_webhooks(request: Request) -> Response:
    table = _webhooks(request).table
    holder = principal(request)
    endpoints = sorted(
        (e for e in table.endpoints.values() if holder.sees(e.row.namespace)),
        key=lambda e: (e.row.namespace, e.row.name),
    )
    return JSONResponse({"data": [endpoint.to_json() for endpoint in endpoints]})


async def list_deliveries(request: Request) -> Response:
    raw_limit = request.query_params.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
        raise BadRequest("limit must be a whole number from 1 to 500")
    webhook = None
    wanted = request.query_params.get("webhook")
    if wanted:
        namespace, slash, name = wanted.partition("/")
        if not slash or not namespace or not name:
            raise BadRequest("webhook must be <namespace>/<name>, e.g. shop/github")
        webhook = (namespace, name)
        principal(request).require_namespace(namespace, f"webhook {wanted}")
    deliveries = await _webhooks(request).deliveries(
        webhook=webhook, limit=int(raw_limit), namespace=principal(request).namespace
    )
    return JSONResponse({"data": deliveries})


def routes() -> list[Route]:
    return [
        Route("/webhooks/{namespace}/{name}", receive_webhook, methods=["POST"]),
        Route("/v1/webhooks", list_webhooks, methods=["GET"]),
        Route("/v1/webhooks/deliveries", list_deliveries, methods=["GET"]),
    ]
