"""Signing keys of namespaces: a Secret labelled ``stepline.dev/signing-key: "true"``, published sealed.

The Secret holds the namespace's key as ``INNGEST_SIGNING_KEY`` and, during a rotation, the previous one as
``INNGEST_SIGNING_KEY_FALLBACK``: the names the Inngest SDKs read, so the same Secret can feed the team's
services (``envFrom``). kopf watches the Secrets of the watched namespaces; the labelled one's keys are
sealed with ``STEPLINE_SECRETS_KEY`` (stepline_store/sealing.py) and published into ``signing_keys``
(never in clear), then ``NOTIFY stepline_routes`` makes every gateway reload them. A Secret deleted, whose
label is removed, or whose fallback is dropped takes that key away the same way: within the time of a
NOTIFY. One Secret per namespace: a second one is refused (logged) while the first exists.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import asyncpg
import kopf
from stepline_store import queries
from stepline_store.errors import is_transient
from stepline_store.sealing import Sealer

from stepline_operator.errors import RoutingUnavailable
from stepline_operator.event_keys import SECRETS, source_of

LABEL = "stepline.dev/signing-key"
CURRENT = "INNGEST_SIGNING_KEY"
PREVIOUS = "INNGEST_SIGNING_KEY_FALLBACK"
DATABASE_RETRY_S = 5.0


class SigningSecretInvalid(Exception):
    """The Secret has no usable ``INNGEST_SIGNING_KEY``, or nothing can seal it."""


def _value(data: Mapping[str, Any], name: str) -> bytes | None:
    raw = data.get(name)
    if raw is None:
        return None
    try:
        value = base64.b64decode(str(raw), validate=True).strip()
    except (binascii.Error, ValueError):
        raise SigningSecretInvalid(f"{name} is not base64 in the Secret's data") from None
    return value or None


def keys_of(data: Mapping[str, Any] | None) -> tuple[bytes, bytes | None]:
    """The current and the previous key of a Secret's ``data``; ``SigningSecretInvalid`` without a current."""
    found = data or {}
    current = _value(found, CURRENT)
    if current is None:
        raise SigningSecretInvalid(f"the Secret has no {CURRENT}: give the namespace's signing key under it")
    previous = _value(found, PREVIOUS)
    try:
        current.decode("utf-8")
        if previous is not None:
            previous.decode("utf-8")
    except UnicodeDecodeError:
        raise SigningSecretInvalid("a signing key is not UTF-8 text (signkey-<env>-<hex>)") from None
    return current, None if previous == current else previous


def sealed(sealer: Sealer, current: bytes, previous: bytes | None) -> tuple[str, str | None, str]:
    """The sealed keys and the fingerprint that tells a changed Secret (keyed: it reveals nothing)."""
    fingerprint = sealer.fingerprint(current + b"\0" + (previous or b""))
    return sealer.seal(current), None if previous is None else sealer.seal(previous), fingerprint


async def publish(
    pool: asyncpg.Pool, namespace: str, source: str, keys: tuple[str, str | None, str] | None
) -> str:
    """Publish (``keys``: sealed current, sealed previous, fingerprint) or remove (None) the keys of
    Secret ``source``; answer ``changed``, ``same``, or the source that holds the namespace."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            if keys is None:
                status = await queries.remove_signing_key(conn, source=source)
                outcome = "changed" if status.split()[-1] != "0" else "same"
            else:
                current, previous, fingerprint = keys
                answer = await queries.replace_signing_key(
                    conn,
                    namespace=namespace,
                    source=source,
                    sealed_current=current,
                    sealed_previous=previous,
                    fingerprint=fingerprint,
                )
                if answer is None:
                    # Another Secret published the namespace's key at the same moment: nothing was written.
                    raise RoutingUnavailable(
                        f"another Secret published the signing key of {namespace} at the same moment"
                    )
                outcome = answer
            if outcome == "changed":
                await queries.notify_routes(conn)
            return outcome
    except Exception as err:
        if not is_transient(err):
            raise
        raise RoutingUnavailable(f"cannot reach the database to publish the signing keys: {err}") from None


def register(registry: kopf.OperatorRegistry, pool: asyncpg.Pool, sealer: Sealer | None) -> None:
    """Add the signing-key Secrets' watch to ``registry``; unlabelled Secrets cost no query unless they
    published keys before."""
    published: set[str] = set()

    @kopf.on.event(*SECRETS, registry=registry, id="signing-keys")
    async def signing_keys(event: Mapping[str, Any], body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
        keep = event.get("type") != "DELETED" and body.metadata.labels.get(LABEL) == "true"
        source = source_of(namespace, name)
        if not keep and source not in published:
            return
        keys = None
        if keep:
            try:
                if sealer is None:
                    raise SigningSecretInvalid(
                        "STEPLINE_SECRETS_KEY is not set: the operator cannot seal signing keys, and never "
                        "publishes them in clear"
                    )
                keys = sealed(sealer, *keys_of(body.get("data")))
            except SigningSecretInvalid as err:
                # Published nothing (and removed what it had): the namespace falls back to the cluster's key.
                logger.warning("signing keys of Secret %s/%s refused: %s", namespace, name, err)
        try:
            outcome = await publish(pool, namespace, source, keys)
        except RoutingUnavailable as err:
            raise kopf.TemporaryError(err.message, delay=DATABASE_RETRY_S) from None
        if keys is None:
            published.discard(source)
            if outcome == "changed":
                logger.info("signing keys of Secret %s/%s removed", namespace, name)
            return
        if outcome in ("changed", "same"):
            published.add(source)
            if outcome == "changed":
                rotating = " with a previous key" if keys[1] is not None else ""
                logger.info("signing keys of Secret %s/%s published%s", namespace, name, rotating)
            return
        logger.warning(
            "signing keys of Secret %s/%s refused: namespace %s takes its keys from %s; keep one Secret "
            "labelled %s=true per namespace",
            namespace,
            name,
            namespace,
            outcome.removeprefix("kubernetes:"),
            LABEL,
        )
