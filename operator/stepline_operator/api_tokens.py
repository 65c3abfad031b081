"""API tokens: Secrets labelled ``stepline.dev/api-token: "true"``, published as hashes with a role.

The Secret's annotations say what its tokens may do (docs/security.md): ``stepline.dev/api-token-role`` is
``viewer`` (the default: read only) or ``operator`` (also replay, cancel, remove apps, send test events);
``stepline.dev/api-token-scope`` is ``namespace`` (the default: the Secret's own namespace) or ``cluster``
(every namespace), which is honoured only for Secrets in the operator's own namespace
(``cluster_token_namespace``): a team that may write Secrets in its namespace must not mint itself a
cluster token. The sha256 of every value of the Secret's ``data`` is published into ``api_tokens``
(never the token), replacing what the Secret published before, then ``NOTIFY stepline_routes`` makes
every gateway reload; deleting the Secret (or removing its label) revokes its tokens, and the dashboard
sessions signed in with them, within the time of a NOTIFY.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import kopf
from stepline_store import queries
from stepline_store.errors import is_transient

from stepline_operator.errors import RoutingUnavailable
from stepline_operator.event_keys import SECRETS, hashes_of, source_of

LABEL = "stepline.dev/api-token"
ROLE_ANNOTATION = "stepline.dev/api-token-role"
SCOPE_ANNOTATION = "stepline.dev/api-token-scope"
ROLES = ("viewer", "operator")
DATABASE_RETRY_S = 5.0


class TokenSecretInvalid(Exception):
    """The Secret's annotations name no role or scope we know, or a cluster scope where it is not allowed."""


def grant_of(
    namespace: str, annotations: Mapping[str, str], cluster_namespace: str | None
) -> tuple[str, str | None]:
    """The role and the namespace (None: the cluster) of a token Secret's tokens."""
    role = annotations.get(ROLE_ANNOTATION, "viewer")
    if role not in ROLES:
        raise TokenSecretInvalid(f"{ROLE_ANNOTATION} must be viewer or operator, not {role!r}")
    scope = annotations.get(SCOPE_ANNOTATION, "namespace")
    if scope == "namespace":
        return role, namespace
    if scope != "cluster":
        raise TokenSecretInvalid(f"{SCOPE_ANNOTATION} must be namespace or cluster, not {scope!r}")
    if cluster_namespace is None or namespace != cluster_namespace:
        where = cluster_namespace or "none: STEPLINE_CLUSTER_TOKEN_NAMESPACE is not set"
        raise TokenSecretInvalid(
            f"a cluster-scoped token must be in the operator's namespace for them ({where}), not {namespace}"
        )
    return role, None


async def publish(
    pool: asyncpg.Pool, source: str, namespace: str | None, role: str, hashes: list[str]
) -> bool:
    """Make ``hashes`` the tokens of ``source`` (none: remove them); answer if any changed."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            changed = await queries.replace_api_tokens(
                conn, source=source, namespace=namespace, role=role, token_hashes=hashes
            )
            if changed:
                await queries.notify_routes(conn)
            return bool(changed)
    except Exception as err:
        if not is_transient(err):
            raise
        raise RoutingUnavailable(f"cannot reach the database to publish the API tokens: {err}") from None


def register(registry: kopf.OperatorRegistry, pool: asyncpg.Pool, cluster_namespace: str | None) -> None:
    """Add the token Secrets' watch to ``registry``; unlabelled Secrets cost no query unless they
    published tokens before."""
    published: set[str] = set()

    @kopf.on.event(*SECRETS, registry=registry, id="api-tokens")
    async def api_tokens(event: Mapping[str, Any], body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
        keep = event.get("type") != "DELETED" and body.metadata.labels.get(LABEL) == "true"
        source = source_of(namespace, name)
        if not keep and source not in published:
            return
        role: str = "viewer"
        scope: str | None = namespace
        hashes: list[str] = []
        if keep:
            try:
                role, scope = grant_of(namespace, body.metadata.annotations, cluster_namespace)
                hashes = hashes_of(body.get("data"))
            except TokenSecretInvalid as err:
                # Published nothing (and revoked what it had): a wrong annotation never widens a token.
                logger.warning("API tokens of Secret %s/%s refused: %s", namespace, name, err)
        try:
            changed = await publish(pool, source, scope, role, hashes)
        except RoutingUnavailable as err:
            raise kopf.TemporaryError(err.message, delay=DATABASE_RETRY_S) from None
        if hashes:
            published.add(source)
        else:
            published.discard(source)
        if changed:
            logger.info(
                "API tokens of Secret %s/%s published: %d %s token(s) for %s",
                namespace,
                name,
                len(hashes),
                role,
                scope or "the cluster",
            )
