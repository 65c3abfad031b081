"""``Webhook`` and ``Secret`` documents of manifest files (``stepline dev -f``, ``stepline gateway -f``).

The same files that hold Function manifests may hold Webhooks and the Secrets they name (``stringData``, or
base64 ``data``), so that one set of manifests works on a laptop and in a cluster. Each Webhook is checked
as the operator checks it (its schema, its transform compiles, its Secret and key exist and fit the scheme)
and sealed for publishing; an error names the file and the document, never a secret's value.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml
from stepline.manifest import describe_error
from stepline.webhook import WebhookResource, parse_webhook, secret_problem
from stepline_store.sealing import Sealer
from stepline_store.webhooks import MANIFEST_SOURCE, PublishedWebhook, seal_webhook

from stepline_gateway.errors import BadRequest
from stepline_gateway.routing import ExpressionError, compile_expression

_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class _Declared:
    file: Path
    resource: WebhookResource


def _files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES)
        elif path.exists():
            files.append(path)
        else:
            raise BadRequest(f"{path}: no such file or folder")
    return files


def _secret_data(file: Path, document: dict[str, Any]) -> dict[str, bytes]:
    """A Secret's keys as Kubernetes would store them: ``data`` decoded, then ``stringData`` over it."""
    name = (document.get("metadata") or {}).get("name", "?")
    data: dict[str, bytes] = {}
    for key, value in (document.get("data") or {}).items():
        try:
            data[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(
                f"{file}: Secret {name}: data.{key} is not base64 (use stringData for text)"
            ) from None
    for key, value in (document.get("stringData") or {}).items():
        data[str(key)] = str(value).encode("utf-8")
    return data


def load_webhook_manifests(paths: list[Path], *, sealer: Sealer | None) -> list[PublishedWebhook]:
    """The Webhooks of the manifest files, checked and sealed; ``BadRequest`` naming the file at fault."""
    webhooks: list[_Declared] = []
    secrets: dict[tuple[str, str], dict[str, bytes]] = {}
    for file in _files(paths):
        try:
            documents = [d for d in yaml.safe_load_all(file.read_text("utf-8")) if d]
        except yaml.YAMLError as err:
            raise BadRequest(f"{file}: not valid YAML: {err}".replace("\n", " ")) from None
        for document in documents:
            if not isinstance(document, dict):
                continue
            if document.get("kind") == "Secret" and document.get("apiVersion") == "v1":
                meta = document.get("metadata") or {}
                key = (str(meta.get("namespace") or "default"), str(meta.get("name", "")))
                secrets[key] = _secret_data(file, document)
            elif document.get("kind") == "Webhook":
                try:
                    webhooks.append(_Declared(file, parse_webhook(document)))
                except pydantic.ValidationError as err:
                    name = (document.get("metadata") or {}).get("name", "?")
                    raise BadRequest(f"{file}: Webhook {name}: {describe_error(err)}") from None
    return [_seal(declared, secrets, sealer) for declared in webhooks]


def _seal(
    declared: _Declared, secrets: dict[tuple[str, str], dict[str, bytes]], sealer: Sealer | None
) -> PublishedWebhook:
    resource, where = declared.resource, f"{declared.file}: Webhook {declared.resource.metadata.name}"
    namespace, verify = resource.metadata.namespace, resource.spec.verify
    if resource.spec.transform:
        try:
            compile_expression(resource.spec.transform)
        except ExpressionError as err:
            raise BadRequest(f"{where}: spec.transform: {err}") from None
    values = []
    for index, ref in enumerate(verify.secret_refs()):
        field = f"spec.verify.{verify.scheme}.{'secretRef' if index == 0 else 'previousSecretRef'}"
        data = secrets.get((namespace, ref.name))
        if data is None:
            raise BadRequest(
                f"{where}: {field} names Secret {ref.name}, which no manifest file holds in namespace "
                f"{namespace}: add a Secret document (stringData: {{{ref.key}: ...}}) beside the Webhook"
            )
        if ref.key not in data:
            raise BadRequest(f"{where}: {field}: Secret {ref.name} has no key {ref.key!r}")
        problem = secret_problem(verify.scheme, data[ref.key])
        if problem is not None:
            raise BadRequest(f"{where}: {field}: the secret in {ref.name}/{ref.key} {problem}")
        values.append(data[ref.key])
    if values and sealer is None:
        raise BadRequest(
            f"{where}: its secret is published sealed, and this gateway has no STEPLINE_SECRETS_KEY: set one "
            "(stepline dev makes one in its data directory)"
        )
    return seal_webhook(resource, values, sealer=sealer, source=MANIFEST_SOURCE)
