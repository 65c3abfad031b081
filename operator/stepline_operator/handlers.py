"""The kopf handlers: Functions reconciled into routes, Services watched, routes removed on delete.

``build_registry`` wires one ``Reconciler`` into a fresh kopf registry (no module-level state, so tests can
run several operators). On create, update and resume a Function is checked, its endpoint resolved against
the watched Services, its route published, and its status and Events written. A missing Service is a
``kopf.TemporaryError`` retried every ``service_retry_s``; meanwhile a small daemon of that Function waits
for the Service to appear and reconciles at once, so it turns Ready within moments, not at the next retry.
The finalizer (ours, not kopf's default) removes the route on delete; runs already started finish. A timer
per Function writes its live counts (``status.stats``, stats.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
from stepline.crd import PLURAL
from stepline.manifest import API_GROUP, API_VERSION
from stepline_store.identity import DEFAULT_NAMESPACE, IdentityError, qualified_function_id

from stepline_operator import api_tokens, conditions, event_keys, signing_keys, webhooks
from stepline_operator.checks import CheckedFunction, check_function
from stepline_operator.conditions import ENDPOINT_RESOLVED, READY, ROUTED, Verdict
from stepline_operator.endpoints import Resolution, ServiceInfo, resolve_endpoint
from stepline_operator.errors import (
    EndpointUnresolved,
    FunctionIdTaken,
    InvalidSpec,
    ReconcileError,
    RoutingUnavailable,
)
from stepline_operator.routes import Route, RouteTable, source_of
from stepline_operator.secrets import SecretReader
from stepline_operator.settings import OperatorSettings
from stepline_operator.stats import StatsBoard

FUNCTIONS = (API_GROUP, API_VERSION, PLURAL)
SERVICES = ("", "v1", "services")
DATABASE_RETRY_S = 10.0
_WAITING_REASONS = ("ServiceNotFound", "PortNotFound")

ServiceKey = tuple[str, str]


def _service_of(index: kopf.Index[ServiceKey, ServiceInfo], namespace: str, name: str) -> ServiceInfo | None:
    store = index.get((namespace, name))
    return next(iter(store), None) if store is not None else None


def waiting_for_service(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """Whether the Function waits for its Service (or the Service's port) to appear."""
    if not (spec.get("endpoint") or {}).get("serviceRef"):
        return False
    found = conditions.find(status.get("conditions") or [], ENDPOINT_RESOLVED)
    return found is not None and found.get("status") == "False" and found.get("reason") in _WAITING_REASONS


class Reconciler:
    """Turns a Function's body into its route and its status; shared by the handlers and the daemons."""

    def __init__(self, settings: OperatorSettings, routes: RouteTable) -> None:
        self.settings = settings
        self.routes = routes
        self._locks: dict[str, asyncio.Lock] = {}
        self._service_signals: dict[ServiceKey, asyncio.Event] = {}

    def lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)

    def service_changed(self, key: ServiceKey) -> None:
        signal = self._service_signals.pop(key, None)
        if signal is not None:
            signal.set()

    def service_signal(self, key: ServiceKey) -> asyncio.Event:
        return self._service_signals.setdefault(key, asyncio.Event())

    def resolve(self, checked: CheckedFunction, services: kopf.Index[ServiceKey, ServiceInfo]) -> Resolution:
        resource = checked.resource
        ref = resource.spec.endpoint.service_ref
        service = _service_of(services, resource.metadata.namespace, ref.name) if ref else None
        return resolve_endpoint(resource, service, cluster_domain=self.settings.cluster_domain)

    async def reconcile(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        services: kopf.Index[ServiceKey, ServiceInfo],
        logger: kopf.Logger,
    ) -> None:
        """Route the Function and write its status; raise ``kopf.TemporaryError`` for what is retried."""
        async with self.lock(body.metadata.uid or ""):
            try:
                checked = check_function(body)
                resolution = self.resolve(checked, services)
                route = self._route(body, checked, resolution)
                changed = await self.routes.publish(route)
            except ReconcileError as err:
                self._report_failure(body, patch, err)
                if isinstance(err, InvalidSpec):
                    logger.warning("not routed: %s", err.message)
                    return  # fixed only by editing the resource, which starts a new reconcile
                delay = (
                    DATABASE_RETRY_S if isinstance(err, RoutingUnavailable) else self.settings.service_retry_s
                )
                raise kopf.TemporaryError(err.message, delay=delay) from None
            self._report_success(body, patch, checked, resolution, changed=changed)
            logger.info("routed %s to %s (%s)", route.id, route.url, "published" if changed else "unchanged")

    def _route(self, body: kopf.Body, checked: CheckedFunction, resolution: Resolution) -> Route:
        resource = checked.resource
        namespace = body.metadata.namespace or DEFAULT_NAMESPACE
        try:
            # Namespace + app + function id: two namespaces may use the same ids.
            function_id = qualified_function_id(namespace, resource.full_id)
        except IdentityError as err:
            raise InvalidSpec(f"spec.app / spec.functionId: {err}") from None
        return Route(
            id=function_id,
            app_id=resource.spec.app,
            name=resource.function_id,
            url=resolution.url,
            triggers=checked.triggers,
            retries=resource.spec.retries,
            paused=resource.spec.paused,
            source=source_of(namespace, body.metadata.name or ""),
            cancel_on=checked.cancel_on,
            flow=checked.flow,
            retry_policy=checked.retry_policy,
        )

    def _write(
        self, body: kopf.Body, patch: kopf.Patch, verdicts: Sequence[Verdict], **fields: Any
    ) -> Mapping[str, Any] | None:
        """Patch the status; answer the previous Ready condition when Ready changed (so an Event is due)."""
        previous = list(body.status.get("conditions") or [])
        generation = body.metadata.get("generation")
        merged = conditions.merge(previous, verdicts, generation=generation)
        patch.status["conditions"] = merged
        patch.status["observedGeneration"] = generation
        for key, value in fields.items():
            patch.status[key] = value
        old_ready = conditions.find(previous, READY) or {}
        new_ready = conditions.find(merged, READY) or {}
        keys = ("status", "reason", "message")
        return old_ready if any(old_ready.get(k) != new_ready.get(k) for k in keys) else None

    def _report_failure(self, body: kopf.Body, patch: kopf.Patch, err: ReconcileError) -> None:
        previous = body.status.get("conditions") or []
        verdicts = [Verdict(READY, False, err.reason, err.message)]
        if isinstance(err, EndpointUnresolved):
            verdicts.append(Verdict(ENDPOINT_RESOLVED, False, err.reason, err.message))
        if isinstance(err, FunctionIdTaken):
            verdicts.append(Verdict(ROUTED, False, err.reason, err.message))
        elif not conditions.is_true(previous, ROUTED):
            verdicts.append(Verdict(ROUTED, False, err.reason, f"not routed: {err.message}"))
        # Otherwise the older generation's route stays published (bad input changes nothing) and Routed
        # keeps the generation it was published for.
        if self._write(body, patch, verdicts) is not None:
            kopf.warn(body, reason=_EVENT_REASONS.get(type(err), err.reason), message=err.message)

    def _report_success(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        checked: CheckedFunction,
        resolution: Resolution,
        *,
        changed: bool,
    ) -> None:
        resource = checked.resource
        paused = resource.spec.paused
        by = "serviceRef" if resource.spec.endpoint.service_ref else "url"
        routed = f"{resource.full_id} is routed to {resolution.url} for {checked.summary}" + (
            "; paused: no new runs start until spec.paused is false" if paused else ""
        )
        verdicts = [
            Verdict(READY, True, "Paused" if paused else "Routed", routed),
            Verdict(
                ENDPOINT_RESOLVED,
                True,
                "ServiceResolved" if by == "serviceRef" else "URLGiven",
                resolution.message,
            ),
            Verdict(ROUTED, True, "Published", routed),
        ]
        ready_changed = self._write(
            body, patch, verdicts, endpointURL=resolution.url, triggers=checked.summary
        )
        if changed or ready_changed is not None:
            kopf.info(body, reason="Paused" if paused else "Routed", message=routed)


_EVENT_REASONS: dict[type[ReconcileError], str] = {
    InvalidSpec: "InvalidSpec",
    EndpointUnresolved: "EndpointUnresolved",
    FunctionIdTaken: "FunctionIdConflict",
    RoutingUnavailable: "DatabaseUnavailable",
}


def build_registry(
    settings: OperatorSettings, routes: RouteTable, secrets: SecretReader
) -> kopf.OperatorRegistry:
    """A kopf registry with the operator's handlers (Functions here, Webhooks in ``webhooks``), bound to
    ``settings``, ``routes`` and the reader of Secrets."""
    registry = kopf.OperatorRegistry()
    reconciler = Reconciler(settings, routes)
    webhooks.register(registry, settings, routes.pool, secrets)
    event_keys.register(registry, routes.pool)
    api_tokens.register(registry, routes.pool, settings.cluster_token_namespace)
    signing_keys.register(registry, routes.pool, settings.sealer())

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.index(*SERVICES, registry=registry, id="services")
    def services(body: kopf.Body, **_: Any) -> dict[ServiceKey, ServiceInfo]:
        info = ServiceInfo.from_body(body)
        return {(info.namespace, info.name): info}

    @kopf.on.event(*SERVICES, registry=registry, id="service-changes")
    def service_event(namespace: str | None, name: str | None, **_: Any) -> None:
        reconciler.service_changed((namespace or "", name or ""))

    @kopf.on.resume(*FUNCTIONS, registry=registry, id="route")
    @kopf.on.create(*FUNCTIONS, registry=registry, id="route")
    @kopf.on.update(*FUNCTIONS, registry=registry, id="route")
    async def route(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **kwargs: Any) -> None:
        await reconciler.reconcile(body, patch, kwargs["services"], logger)

    @kopf.daemon(*FUNCTIONS, registry=registry, id="await-service", when=waiting_for_service)
    async def await_service(
        body: kopf.Body, patch: kopf.Patch, stopped: kopf.DaemonStopped, logger: kopf.Logger, **kwargs: Any
    ) -> None:
        services: kopf.Index[ServiceKey, ServiceInfo] = kwargs["services"]
        namespace = body.metadata.namespace or "default"
        while not stopped:
            ref = (body.spec.get("endpoint") or {}).get("serviceRef") or {}
            signal = reconciler.service_signal((namespace, str(ref.get("name", ""))))
            try:
                reconciler.resolve(check_function(body), services)
            except ReconcileError:
                waiters = [asyncio.ensure_future(signal.wait()), asyncio.ensure_future(stopped.wait())]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await waiter
                continue
            logger.info("Service %s appeared: routing now", ref.get("name"))
            await reconciler.reconcile(body, patch, services, logger)
            return

    board = StatsBoard(routes.pool, namespaces=settings.namespaces, max_age_s=settings.stats_interval_s)

    @kopf.timer(*FUNCTIONS, registry=registry, id="stats", interval=settings.stats_interval_s, sharp=False)
    async def stats(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        source = source_of(body.metadata.namespace or "default", body.metadata.name or "")
        counts = await board.of(source)
        if counts is not None and body.status.get("stats") != counts:
            patch.status["stats"] = counts

    @kopf.on.delete(*FUNCTIONS, registry=registry, id="unroute")
    async def unroute(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        source = source_of(body.metadata.namespace or "default", body.metadata.name or "")
        try:
            removed = await routes.unpublish(source)
        except RoutingUnavailable as err:
            raise kopf.TemporaryError(err.message, delay=DATABASE_RETRY_S) from None
        reconciler.forget(body.metadata.uid or "")
        if removed:
            logger.info("removed the route of %s", source)
            kopf.info(body, reason="Unrouted", message="the route is removed; runs already started finish")

    return registry
