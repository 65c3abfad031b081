"""The CustomResourceDefinitions, generated from the API models (``stepline.manifest``, ``stepline.webhook``).

``function_crd()`` and ``webhook_crd()`` turn the pydantic JSON schemas of a spec and a status model into a
structural OpenAPI v3 schema (references inlined, optional fields as plain properties, int-or-string ports,
defaults and bounds kept, CEL rules carried over) and wrap it in the CRD with its printer columns.
``stepline crds`` prints them; ``crds/`` and the Helm chart hold that output, checked for drift by a test.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from stepline import webhook
from stepline.manifest import API_GROUP, API_VERSION, KIND, FunctionSpec, FunctionStatus

PLURAL = "functions"
SINGULAR = "function"
SHORT_NAMES = ["fn"]
CATEGORIES = ["stepline"]
CRD_NAME = f"{PLURAL}.{API_GROUP}"
WEBHOOK_PLURAL = "webhooks"
WEBHOOK_SINGULAR = "webhook"
WEBHOOK_SHORT_NAMES = ["wh"]
WEBHOOK_CRD_NAME = f"{WEBHOOK_PLURAL}.{API_GROUP}"

# Keywords a structural schema accepts (anything else pydantic writes, e.g. "title", is dropped).
_KEPT = {
    "type",
    "format",
    "description",
    "default",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "items",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-int-or-string",
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "App", "type": "string", "jsonPath": ".spec.app", "description": "The app id"},
    {
        "name": "Endpoint",
        "type": "string",
        "jsonPath": ".status.endpointURL",
        "description": "The serve URL the gateway calls",
    },
    {
        "name": "Triggers",
        "type": "string",
        "jsonPath": ".status.triggers",
        "description": "What starts a run",
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Routed and reachable",
    },
    {
        "name": "Running",
        "type": "integer",
        "jsonPath": ".status.stats.running",
        "description": "Runs started and not ended",
    },
    {
        "name": "Queued",
        "type": "integer",
        "jsonPath": ".status.stats.queued",
        "description": "Runs waiting for their first call",
    },
    {
        "name": "Failed",
        "type": "integer",
        "jsonPath": ".status.stats.failedLastHour",
        "description": "Runs failed in the last hour",
    },
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Why it is (not) ready",
    },
    {"name": "Paused", "type": "boolean", "priority": 1, "jsonPath": ".spec.paused"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

WEBHOOK_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "URL",
        "type": "string",
        "jsonPath": ".status.url",
        "description": "The gateway's path that receives the provider's requests",
    },
    {
        "name": "Verify",
        "type": "string",
        "jsonPath": ".status.verify",
        "description": "How requests are checked",
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Published with its secret",
    },
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Why it is (not) ready",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """One pydantic JSON-schema node as a structural schema node."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    node = dict(node)
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        types = {b.get("type") for b in branches}
        if types == {"integer", "string"}:
            node["x-kubernetes-int-or-string"] = True
        elif len(branches) == 1:
            node = {**_structural(branches[0], defs), **node}
        else:
            raise ValueError(f"no structural form for anyOf {branches!r}")
    if node.get("default", ...) is None:
        del node["default"]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEPT:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "description":
            out[key] = " ".join(value.replace("``", "'").split())
        else:
            out[key] = copy.deepcopy(value)
    if out.get("type") == "integer":
        out.setdefault("format", "int64")
    return out


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural(raw, raw.get("$defs", {}))
    return schema


def _crd(
    *,
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    columns: list[dict[str, Any]],
    description: str,
    spec: type[BaseModel],
    status: type[BaseModel],
) -> dict[str, Any]:
    """One namespaced CRD (``apiextensions.k8s.io/v1``) of our group, as a plain dict ready to dump."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{API_GROUP}", "labels": {"app.kubernetes.io/part-of": "stepline"}},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short_names,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(columns),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _schema_of(spec),
                                "status": _schema_of(status),
                            },
                        }
                    },
                }
            ],
        },
    }


def function_crd() -> dict[str, Any]:
    """The CRD of ``Function``."""
    return _crd(
        kind=KIND,
        plural=PLURAL,
        singular=SINGULAR,
        short_names=SHORT_NAMES,
        columns=PRINTER_COLUMNS,
        description="A durable function: where its app serves it and what starts its runs. The Stepline "
        "operator routes it to the gateways.",
        spec=FunctionSpec,
        status=FunctionStatus,
    )


def webhook_crd() -> dict[str, Any]:
    """The CRD of ``Webhook``."""
    return _crd(
        kind=webhook.KIND,
        plural=WEBHOOK_PLURAL,
        singular=WEBHOOK_SINGULAR,
        short_names=WEBHOOK_SHORT_NAMES,
        columns=WEBHOOK_PRINTER_COLUMNS,
        description="A provider's webhook: how the gateway checks its signed requests and turns them into "
        "events. The Stepline operator publishes it, with its secret, to the gateways.",
        spec=webhook.WebhookSpec,
        status=webhook.WebhookStatus,
    )


def all_crds() -> list[dict[str, Any]]:
    """Every CRD of Stepline, in the order ``stepline crds`` prints them."""
    return [function_crd(), webhook_crd()]
