"""The published webhooks in Postgres: sealed on the way in, written only when they changed, NOTIFYed.

The operator (one Webhook resource at a time) and the gateways loading manifest files (all of theirs at once)
publish through ``publish_webhooks``; the gateways read them back with ``load_webhooks`` and open the secrets
with the same ``Sealer``. A webhook published by one source is never taken over by another. Every change is
one transaction ending in ``NOTIFY stepline_webhooks``; publishing what is already there writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stepline.webhook import WebhookResource, clean_secret

from stepline_store import queries
from stepline_store.errors import StoreError
from stepline_store.pool import Db
from stepline_store.sealing import Sealer

CHANNEL = "stepline_webhooks"
MANIFEST_SOURCE = "manifest"


class WebhookTaken(StoreError):
    """The webhook is already published by another source (another resource, or manifest files)."""


def kubernetes_source(namespace: str, name: str) -> str:
    """The ``source`` of the webhook a Webhook resource publishes."""
    return f"kubernetes:{namespace}/{name}"


@dataclass(frozen=True)
class PublishedWebhook:
    """One row of the ``webhooks`` table: the secrets sealed, current first."""

    namespace: str
    name: str
    scheme: str
    options: dict[str, Any]
    secrets: list[str]
    transform: str | None
    source: str
    fingerprint: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def seal_webhook(
    resource: WebhookResource, secrets: Sequence[bytes], *, sealer: Sealer | None, source: str
) -> PublishedWebhook:
    """The row a resource publishes, its ``secrets`` (current first) sealed. A scheme with secrets needs a
    ``sealer``; the fingerprint covers everything published, secrets included, keyed by the sealing key."""
    verify = resource.spec.verify
    cleaned = [clean_secret(secret) for secret in secrets]
    if cleaned and sealer is None:
        raise ValueError("no STEPLINE_SECRETS_KEY: a webhook's secret can only be published sealed")
    described = json.dumps(
        {
            "scheme": verify.scheme,
            "options": verify.options(),
            "transform": resource.spec.transform,
            "secrets": [secret.hex() for secret in cleaned],
        },
        sort_keys=True,
    ).encode()
    return PublishedWebhook(
        namespace=resource.metadata.namespace,
        name=resource.metadata.name,
        scheme=verify.scheme,
        options=verify.options(),
        secrets=[sealer.seal(secret) for secret in cleaned] if sealer is not None else [],
        transform=resource.spec.transform,
        source=source,
        fingerprint=sealer.fingerprint(described) if sealer is not None else _plain_fingerprint(described),
    )


def _plain_fingerprint(described: bytes) -> str:
    # Only when there is no secret to seal (scheme none, no key set): nothing secret is digested.
    return hashlib.sha256(described).hexdigest()


async def publish_webhooks(
    conn: Db, webhooks: Sequence[PublishedWebhook], *, source: str, replace: bool
) -> int:
    """Write ``webhooks`` (all of ``source``) in the caller's transaction; with ``replace``, remove the other
    webhooks of ``source``. Raise ``WebhookTaken`` when another source holds one. Answer the rows changed;
    when there are any, the gateways are notified at commit."""
    await queries.lock_webhooks(conn)
    namespaces = [w.namespace for w in webhooks]
    names = [w.name for w in webhooks]
    existing = await queries.webhooks_of_keys_or_source(
        conn, namespaces=namespaces, names=names, source=source
    )
    for row in existing:
        if row["source"] != source and (row["namespace"], row["name"]) in {w.key for w in webhooks}:
            raise WebhookTaken(
                f"webhook {row['namespace']}/{row['name']} is already published by {row['source']}: remove "
                "that one, or give this one another name"
            )
    changed = 0
    if webhooks:
        written = await queries.upsert_webhooks(
            conn,
            namespaces=namespaces,
            names=names,
            schemes=[w.scheme for w in webhooks],
            options=[json.dumps(w.options) for w in webhooks],
            sealed_secrets=[json.dumps(w.secrets) for w in webhooks],
            transforms=[w.transform for w in webhooks],
            sources=[w.source for w in webhooks],
            fingerprints=[w.fingerprint for w in webhooks],
        )
        changed += len(written)
    if replace:
        removed = await queries.delete_webhooks_of_source_except(
            conn, source=source, keep_namespaces=namespaces, keep_names=names
        )
        changed += len(removed)
    if changed:
        await queries.notify_webhooks(conn)
    return changed


async def unpublish_webhooks(conn: Db, *, source: str) -> int:
    """Remove every webhook of ``source`` in the caller's transaction; answer how many (then NOTIFY)."""
    return await publish_webhooks(conn, [], source=source, replace=True)


async def load_webhooks(conn: Db) -> list[PublishedWebhook]:
    rows = await queries.load_webhooks(conn)
    return [
        PublishedWebhook(
            namespace=row["namespace"],
            name=row["name"],
            scheme=row["scheme"],
            options=_json(row["options"]),
            secrets=list(_json(row["secrets"])),
            transform=row["transform"],
            source=row["source"],
            fingerprint=row["fingerprint"],
        )
        for row in rows
    ]


def _json(value: Any) -> Any:
    """A jsonb column, whether or not the connection decodes JSON."""
    return json.loads(value) if isinstance(value, str) else value
