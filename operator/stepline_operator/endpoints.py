"""From ``spec.endpoint`` to the serve URL the gateways call.

``url`` is used as it is. ``serviceRef`` names a Service in the Function's namespace and a port by number or
name; it resolves to ``http://<service>.<namespace>.svc.<cluster-domain>:<port><path>``, the name cluster DNS
answers for the Service. The Services come from the operator's watch (an in-memory index), never from a
request per Function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stepline.manifest import FunctionResource

from stepline_operator.errors import EndpointUnresolved


@dataclass(frozen=True)
class ServicePort:
    name: str | None
    port: int
    target_port: int | str | None


@dataclass(frozen=True)
class ServiceInfo:
    """What resolution needs of a Service: its ports, and whether its DNS name points at pods directly."""

    name: str
    namespace: str
    ports: tuple[ServicePort, ...]
    headless: bool
    external_name: str | None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ServiceInfo:
        spec = body.get("spec") or {}
        meta = body.get("metadata") or {}
        return cls(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", ""),
            ports=tuple(
                ServicePort(p.get("name"), int(p["port"]), p.get("targetPort"))
                for p in spec.get("ports") or []
                if "port" in p
            ),
            headless=spec.get("clusterIP") == "None",
            external_name=spec.get("externalName") if spec.get("type") == "ExternalName" else None,
        )

    def describe_ports(self) -> str:
        if not self.ports:
            return "no ports"
        return ", ".join(f"{p.name} ({p.port})" if p.name else str(p.port) for p in self.ports)


@dataclass(frozen=True)
class Resolution:
    url: str
    message: str


def _port_number(service: ServiceInfo, wanted: int | str, function: str) -> int:
    """The port to dial: the Service's port, or for a headless Service (DNS gives pod IPs) its target port."""
    found = next(
        (p for p in service.ports if (p.name == wanted if isinstance(wanted, str) else p.port == wanted)),
        None,
    )
    if found is None:
        if isinstance(wanted, int) and (service.external_name or not service.ports):
            return wanted
        by = "named" if isinstance(wanted, str) else "numbered"
        raise EndpointUnresolved(
            f"Service {service.name} has no port {by} {wanted!r} (it has {service.describe_ports()}): "
            f"fix spec.endpoint.serviceRef.port of Function {function} or the Service's ports",
            reason="PortNotFound",
        )
    if service.headless and isinstance(found.target_port, int):
        return found.target_port
    return found.port


def resolve_endpoint(
    resource: FunctionResource, service: ServiceInfo | None, *, cluster_domain: str
) -> Resolution:
    """The serve URL of ``resource``; raise ``EndpointUnresolved`` when its Service or port is missing."""
    endpoint = resource.spec.endpoint
    if endpoint.url is not None:
        return Resolution(endpoint.url, "spec.endpoint.url is used as given")
    ref = endpoint.service_ref
    assert ref is not None  # the model guarantees exactly one of url / serviceRef
    namespace = resource.metadata.namespace
    if service is None:
        raise EndpointUnresolved(
            f"Service {ref.name} not found in namespace {namespace}: create it, or fix "
            f"spec.endpoint.serviceRef.name of Function {resource.metadata.name}; retried until it appears",
            reason="ServiceNotFound",
        )
    port = _port_number(service, ref.port, resource.metadata.name)
    url = f"http://{ref.name}.{namespace}.svc.{cluster_domain}:{port}{endpoint.path}"
    return Resolution(url, f"Service {ref.name} port {ref.port} resolved to {url}")
