"""``Function`` resources for an app's functions: the code stays the single source, the YAML is generated.

``function_resources`` renders each function an app serves (failure functions included) as the
``stepline.dev/v1alpha1`` ``Function`` document the operator routes, validated by the same API models as a
manifest (``stepline.manifest``). ``stepline manifests APP:OBJECT`` prints them. Each spec field comes from
one entry of ``SPEC_FIELDS``: a setting the SDK learns later (flow control, timeouts) is one entry more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stepline.flow import FlowControl
from stepline.function import Function, TriggerCron, TriggerEvent, with_failure_functions
from stepline.manifest import API_GROUP, API_VERSION, KIND, FunctionResource
from stepline.protocol import DEFAULT_SERVE_PATH, duration_string

_NAME_MAX = 63
_NOT_IN_NAME = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class ServiceEndpoint:
    """The app's Service in the Function's namespace: ``serviceRef`` and ``path``."""

    name: str
    port: int | str
    path: str = DEFAULT_SERVE_PATH

    def spec(self) -> dict[str, Any]:
        endpoint: dict[str, Any] = {"serviceRef": {"name": self.name, "port": self.port}}
        if self.path != DEFAULT_SERVE_PATH:
            endpoint["path"] = self.path
        return endpoint


@dataclass(frozen=True)
class UrlEndpoint:
    """The app's complete serve URL (outside a cluster, or a Service in another namespace)."""

    url: str

    def spec(self) -> dict[str, Any]:
        return {"url": self.url}


Endpoint = ServiceEndpoint | UrlEndpoint


def _trigger(trigger: TriggerEvent | TriggerCron) -> dict[str, Any]:
    if isinstance(trigger, TriggerEvent):
        return {"event": trigger.event, **({"if": trigger.expression} if trigger.expression else {})}
    return {"cron": trigger.cron, **({"timezone": trigger.timezone} if trigger.timezone else {})}


def _triggers(function: Function) -> list[dict[str, Any]]:
    return [_trigger(trigger) for trigger in function.triggers]


def _cancel_on(function: Function) -> list[dict[str, Any]] | None:
    rules = []
    for cancel in function.cancel_on:
        rule: dict[str, Any] = {"event": cancel.event}
        if cancel.match is not None:
            rule["match"] = cancel.match
        elif cancel.if_exp is not None:
            rule["if"] = cancel.if_exp
        if cancel.timeout is not None:
            timeout = cancel.timeout
            rule["timeout"] = timeout if isinstance(timeout, str) else duration_string(timeout)
        rules.append(rule)
    return rules or None


def _flow_field(name: str) -> Callable[[Function], Any]:
    return lambda function: function.flow.to_json().get(name)


def _retry_policy(function: Function) -> dict[str, Any] | None:
    return None if function.retry_policy is None else function.retry_policy.to_json()


# The spec fields taken from a function, in the order they are written: (field, value or None to leave out).
SPEC_FIELDS: list[tuple[str, Callable[[Function], Any]]] = [
    ("triggers", _triggers),
    ("retries", lambda function: function.retries),
    ("retryPolicy", _retry_policy),
    ("cancelOn", _cancel_on),
] + [(info.alias or name, _flow_field(info.alias or name)) for name, info in FlowControl.model_fields.items()]


def resource_name(function_id: str) -> str:
    """A Kubernetes name for a function id: lower case, ``-`` for anything else, at most 63 characters."""
    name = _NOT_IN_NAME.sub("-", function_id.lower()).strip("-")[:_NAME_MAX].rstrip("-")
    if not name:
        raise ValueError(f"the function id {function_id!r} gives no Kubernetes name: use letters or digits")
    return name


def function_resource(
    function: Function, *, app_id: str, endpoint: Endpoint, namespace: str | None = None
) -> dict[str, Any]:
    """One function as a ``Function`` document, checked by the API models (ValueError if it is not valid)."""
    name = resource_name(function.id)
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {"app": app_id}
    if name != function.id:
        spec["functionId"] = function.id
    spec["endpoint"] = endpoint.spec()
    for field, value_of in SPEC_FIELDS:
        value = value_of(function)
        if value is not None:
            spec[field] = value
    document = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "metadata": metadata, "spec": spec}
    FunctionResource.model_validate(document)
    return document


def function_resources(
    functions: Iterable[Function], *, app_id: str, endpoint: Endpoint, namespace: str | None = None
) -> list[dict[str, Any]]:
    """The ``Function`` documents of everything an app serves: each function, then its failure function."""
    return [
        function_resource(function, app_id=app_id, endpoint=endpoint, namespace=namespace)
        for function in with_failure_functions(list(functions), app_id)
    ]
