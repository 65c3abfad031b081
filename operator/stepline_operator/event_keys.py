"""Event keys of namespaces: Secrets labelled ``stepline.dev/event-key: "true"``, published as hashes.

kopf watches the Secrets of the watched namespaces; for each labelled one, the sha256 of every value of its
``data`` is published into ``event_keys`` with the Secret's namespace (never the key itself), replacing what
the Secret published before, then ``NOTIFY stepline_routes`` makes every gateway reload its keys. A Secret
deleted, or whose label is removed, takes its keys away the same way: within the time of a NOTIFY. An event
sent with such a key reaches only the functions of the Secret's namespace (docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

import asyncpg
import kopf
from stepline_store import queries
from stepline_store.errors import is_transient

from stepline_operator.errors import RoutingUnavailable

LABEL = "stepline.dev/event-key"
SECRETS = ("", "v1", "secrets")
DATABASE_RETRY_S = 5.0


def source_of(namespace: str, name: str) -> str:
    return f"kubernetes:{namespace}/{name}"


def key_hash(key: bytes) -> str:
    """What the store keeps of an event key: the sha256 hex of its bytes (surrounding blanks removed)."""
    return hashlib.sha256(key.strip()).hexdigest()


def hashes_of(data: Mapping[str, Any] | None) -> list[str]:
    """The hashes of a Secret's values (base64 in ``data``); values that are not base64, or empty, skipped."""
    found = set()
    for value in (data or {}).values():
        try:
            key = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            continue
        if key.strip():
            found.add(key_hash(key))
    return sorted(found)


async def publish(pool: asyncpg.Pool, namespace: str, name: str, hashes: list[str]) -> bool:
    """Make ``hashes`` the keys of Secret ``namespace/name`` (none: remove them); answer if any changed."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            changed = await queries.replace_event_keys(
                conn, source=source_of(namespace, name), namespace=namespace, key_hashes=hashes
            )
            if changed:
                await queries.notify_routes(conn)
            return bool(changed)
    except Exception as err:
        if not is_transient(err):
            raise
        raise RoutingUnavailable(f"cannot reach the database to publish the event keys: {err}") from None


def labelled(labels: Mapping[str, str]) -> bool:
    return labels.get(LABEL) == "true"


def register(registry: kopf.OperatorRegistry, pool: asyncpg.Pool) -> None:
    """Add the Secret watch to ``registry``. Secrets without the label cost no query unless they published
    keys before (their label was removed): the sources published are remembered."""
    published: set[str] = set()

    @kopf.on.event(*SECRETS, registry=registry, id="event-keys")
    async def event_keys(event: Mapping[str, Any], body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
        keep = event.get("type") != "DELETED" and labelled(body.metadata.labels)
        source = source_of(namespace, name)
        if not keep and source not in published:
            return
        hashes = hashes_of(body.get("data")) if keep else []
        try:
            changed = await publish(pool, namespace, name, hashes)
        except RoutingUnavailable as err:
            raise kopf.TemporaryError(err.message, delay=DATABASE_RETRY_S) from None
        if hashes:
            published.add(source)
        else:
            published.discard(source)
        if changed:
            logger.info("event keys of Secret %s/%s published: %d key(s)", namespace, name, len(hashes))
