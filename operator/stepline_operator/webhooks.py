"""The kopf handlers of Webhooks: checked, their Secrets read, published sealed, their status written.

On create, update and resume a Webhook is checked (its transform compiles), the Secret(s) its verify block
names are read (``secrets``: a ``get`` of exactly those), sealed with ``STEPLINE_SECRETS_KEY`` and published
into Postgres (``stepline_store.webhooks``: written only when something changed, then NOTIFY), and
``status.url`` and the conditions ``Ready`` and ``SecretResolved`` written, with Events when they change.
A timer does the same every ``secret_refresh_s``: that is how a changed (or newly created) Secret reaches
the gateways. What cannot be published keeps what was published before (bad input changes nothing). The
finalizer removes the webhook on delete: its path answers 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import kopf
from stepline.crd import WEBHOOK_PLURAL
from stepline.manifest import API_GROUP, API_VERSION
from stepline.webhook import WebhookResource, secret_problem
from stepline_store.webhooks import (
    WebhookTaken,
    kubernetes_source,
    publish_webhooks,
    seal_webhook,
    unpublish_webhooks,
)

from stepline_operator import conditions
from stepline_operator.checks import check_webhook
from stepline_operator.conditions import READY, SECRET_RESOLVED, WEBHOOK_ORDER, Verdict
from stepline_operator.errors import InvalidSpec, ReconcileError, RoutingUnavailable, SecretUnresolved
from stepline_operator.secrets import SecretReader, SecretsUnavailable
from stepline_operator.settings import OperatorSettings

WEBHOOKS = (API_GROUP, API_VERSION, WEBHOOK_PLURAL)
RETRY_S = 10.0
# What asyncpg raises when Postgres is away or refuses us: reported as a condition and retried.
_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, TimeoutError)


class WebhookReconciler:
    """Turns a Webhook's body (and its Secrets) into its published row and its status."""

    def __init__(self, settings: OperatorSettings, pool: asyncpg.Pool, secrets: SecretReader) -> None:
        self._pool = pool
        self._secrets = secrets
        self._sealer = settings.sealer()
        self._locks: dict[str, asyncio.Lock] = {}

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)

    async def reconcile(self, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> None:
        """Publish and write the status; raise ``kopf.TemporaryError`` for what is retried."""
        async with self._locks.setdefault(body.metadata.uid or "", asyncio.Lock()):
            resolved: Verdict | None = None
            try:
                resource = check_webhook(body)
                values = await self._resolve(resource)
                resolved = Verdict(
                    SECRET_RESOLVED,
                    True,
                    "SecretRead" if values else "NoSecret",
                    _secrets_message(resource) if values else "verify.none: no secret is used",
                )
                changed = await self._publish(resource, values)
            except ReconcileError as err:
                if isinstance(err, (SecretUnresolved, SecretsUnavailable)):
                    resolved = Verdict(SECRET_RESOLVED, False, err.reason, err.message)
                self._report_failure(body, patch, err, resolved)
                if isinstance(err, (RoutingUnavailable, SecretsUnavailable)):
                    raise kopf.TemporaryError(err.message, delay=RETRY_S) from None
                if not isinstance(err, SecretUnresolved):
                    logger.warning("webhook not published: %s", err.message)
                return  # a Secret is read again by the timer; a spec is fixed by editing it
            self._report_success(body, patch, resource, resolved, changed=changed)
            if changed:
                logger.info("published webhook %s (%s)", resource.path, resource.spec.verify.scheme)

    async def _resolve(self, resource: WebhookResource) -> list[bytes]:
        """The secrets the verify block names, current first; ``SecretUnresolved`` saying what is missing."""
        namespace, verify = resource.metadata.namespace, resource.spec.verify
        read: dict[str, dict[str, bytes] | None] = {}
        values = []
        for index, ref in enumerate(verify.secret_refs()):
            field = f"spec.verify.{verify.scheme}.{'secretRef' if index == 0 else 'previousSecretRef'}"
            if ref.name not in read:
                read[ref.name] = await self._secrets.read(namespace, ref.name)
            data = read[ref.name]
            if data is None:
                raise SecretUnresolved(
                    f"Secret {ref.name} not found in namespace {namespace}: create it with the key "
                    f"{ref.key}, or fix {field}",
                    reason="SecretNotFound",
                )
            if ref.key not in data:
                keys = ", ".join(sorted(data)) or "no keys"
                raise SecretUnresolved(
                    f"Secret {ref.name} has no key {ref.key!r} (it has {keys}): fix {field}.key or the "
                    "Secret",
                    reason="SecretKeyNotFound",
                )
            problem = secret_problem(verify.scheme, data[ref.key])
            if problem is not None:
                raise SecretUnresolved(
                    f"the {verify.scheme} secret in Secret {ref.name}, key {ref.key}, {problem} ({field})",
                    reason="InvalidSecret",
                )
            values.append(data[ref.key])
        if values and self._sealer is None:
            raise ReconcileError(
                "the operator has no STEPLINE_SECRETS_KEY to seal the webhook's secret with: set it (the "
                "chart does) to the same keys as the gateways'",
                reason="SecretsKeyMissing",
            )
        return values

    async def _publish(self, resource: WebhookResource, values: list[bytes]) -> int:
        source = kubernetes_source(resource.metadata.namespace, resource.metadata.name)
        row = seal_webhook(resource, values, sealer=self._sealer, source=source)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await publish_webhooks(conn, [row], source=source, replace=True)
        except WebhookTaken as err:
            raise ReconcileError(str(err), reason="WebhookConflict") from None
        except _UNAVAILABLE as err:
            raise RoutingUnavailable(f"cannot reach the database to publish {resource.path}: {err}") from None

    async def unpublish(self, body: kopf.Body) -> int:
        source = kubernetes_source(body.metadata.namespace or "default", body.metadata.name or "")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await unpublish_webhooks(conn, source=source)
        except _UNAVAILABLE as err:
            raise RoutingUnavailable(f"cannot reach the database to remove {source}: {err}") from None

    def _write(
        self, body: kopf.Body, patch: kopf.Patch, verdicts: Sequence[Verdict], **fields: Any
    ) -> Mapping[str, Any] | None:
        """Patch what differs in the status; answer the previous Ready when Ready changed (an Event's due)."""
        previous = list(body.status.get("conditions") or [])
        generation = body.metadata.get("generation")
        merged = conditions.merge(previous, verdicts, generation=generation, order=WEBHOOK_ORDER)
        for key, value in {"conditions": merged, "observedGeneration": generation, **fields}.items():
            if body.status.get(key) != value:
                patch.status[key] = value
        old_ready = conditions.find(previous, READY) or {}
        new_ready = conditions.find(merged, READY) or {}
        keys = ("status", "reason", "message")
        return old_ready if any(old_ready.get(k) != new_ready.get(k) for k in keys) else None

    def _report_failure(
        self, body: kopf.Body, patch: kopf.Patch, err: ReconcileError, resolved: Verdict | None
    ) -> None:
        namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
        kept = (
            " (what was published before still serves)"
            if conditions.is_true(body.status.get("conditions") or [], READY)
            else ""
        )
        verdicts = [Verdict(READY, False, err.reason, err.message + kept)]
        if resolved is not None:
            verdicts.append(resolved)
        fields: dict[str, Any] = {"url": f"/webhooks/{namespace}/{name}"}
        if not isinstance(err, InvalidSpec):
            scheme = _scheme_of(body)
            if scheme:
                fields["verify"] = scheme
        if self._write(body, patch, verdicts, **fields) is not None:
            kopf.warn(body, reason=err.reason, message=err.message)

    def _report_success(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        resource: WebhookResource,
        resolved: Verdict | None,
        *,
        changed: int,
    ) -> None:
        scheme = resource.spec.verify.scheme
        message = f"the gateways take {scheme} requests at {resource.path}"
        if len(resource.spec.verify.secret_refs()) > 1:
            message += "; the previous secret is accepted too until previousSecretRef is removed"
        verdicts = [Verdict(READY, True, "Published", message)]
        if resolved is not None:
            verdicts.append(resolved)
        ready_changed = self._write(body, patch, verdicts, url=resource.path, verify=scheme)
        if changed or ready_changed is not None:
            kopf.info(body, reason="Published", message=message)


def _secrets_message(resource: WebhookResource) -> str:
    refs = resource.spec.verify.secret_refs()
    names = " and ".join(f"{ref.name}/{ref.key}" for ref in refs)
    return f"read {names}" + (" (current, then previous)" if len(refs) > 1 else "")


def _scheme_of(body: kopf.Body) -> str | None:
    verify = (body.spec.get("verify") or {}) if isinstance(body.spec, Mapping) else {}
    given = [key for key in verify if verify.get(key) is not None]
    return given[0] if len(given) == 1 else None


def register(
    registry: kopf.OperatorRegistry, settings: OperatorSettings, pool: asyncpg.Pool, secrets: SecretReader
) -> None:
    """Add the Webhook handlers to ``registry``."""
    reconciler = WebhookReconciler(settings, pool, secrets)

    @kopf.on.resume(*WEBHOOKS, registry=registry, id="publish")
    @kopf.on.create(*WEBHOOKS, registry=registry, id="publish")
    @kopf.on.update(*WEBHOOKS, registry=registry, id="publish")
    async def publish(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await reconciler.reconcile(body, patch, logger)

    @kopf.timer(
        *WEBHOOKS,
        registry=registry,
        id="reread-secret",
        interval=settings.secret_refresh_s,
        initial_delay=settings.secret_refresh_s,
    )
    async def reread_secret(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await reconciler.reconcile(body, patch, logger)

    @kopf.on.delete(*WEBHOOKS, registry=registry, id="unpublish")
    async def unpublish(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        try:
            removed = await reconciler.unpublish(body)
        except RoutingUnavailable as err:
            raise kopf.TemporaryError(err.message, delay=RETRY_S) from None
        reconciler.forget(body.metadata.uid or "")
        if removed:
            logger.info("removed webhook %s/%s", body.metadata.namespace, body.metadata.name)
            kopf.info(body, reason="Unpublished", message="the webhook is removed: its path answers 404")
