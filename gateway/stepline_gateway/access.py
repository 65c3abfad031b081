"""Who holds an API token and what it may do: a role (``viewer`` reads, ``operator`` also replays,
cancels, removes apps and sends test events) for one namespace or for the cluster (docs/security.md).

Tokens come from two places: the cluster admin token (``STEPLINE_API_TOKEN``, cluster operator), compared
in constant time; and Secrets labelled ``stepline.dev/api-token: "true"``, which the operator publishes as
sha256 hashes (``api_tokens`` table, operator/stepline_operator/api_tokens.py) and every gateway reloads
on ``NOTIFY stepline_routes``. A request's holder is a :class:`Principal`, kept on the request's scope by
the guard (dashboard/auth.py); handlers ask it before they read or change anything outside the holder's
namespace, and answer 403 with what would be needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from stepline_store.identity import namespace_of_function
from stepline_store.queries import LoadApiTokensRow

from stepline_gateway.errors import Forbidden

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
PRINCIPAL_KEY = "stepline.principal"


@dataclass(frozen=True)
class Principal:
    """The holder of a token: ``namespace`` None sees every namespace."""

    role: Role
    namespace: str | None

    @property
    def may_change(self) -> bool:
        return self.role == "operator"

    def sees(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace

    def sees_function(self, function_id: str) -> bool:
        return self.sees(namespace_of_function(function_id))

    def require_namespace(self, namespace: str, what: str) -> None:
        if not self.sees(namespace):
            raise Forbidden(
                f"{what} is in namespace {namespace}, and this API token sees only namespace "
                f"{self.namespace}: use a token of {namespace} or of the cluster"
            )

    def require_function(self, function_id: str, what: str) -> None:
        self.require_namespace(namespace_of_function(function_id), what)

    def require_operator(self, action: str) -> None:
        if not self.may_change:
            raise Forbidden(
                f"this API token is a viewer's: it may read but not {action}; "
                "an operator's token (stepline.dev/api-token-role: operator) may"
            )

    def require_cluster(self, what: str) -> None:
        if self.namespace is not None:
            raise Forbidden(
                f"{what} is not kept per namespace: it needs a token of the cluster, "
                f"and this one sees only namespace {self.namespace}"
            )

    def json(self) -> dict[str, Any]:
        return {"role": self.role, "namespace": self.namespace}


# The cluster admin token, and every request of a gateway served without a token (dev, no_api_token).
ADMIN = Principal("operator", None)


def principal(request: Request) -> Principal:
    """The holder of the request's token (set by the guard); ADMIN where no guard applies."""
    found = request.scope.get(PRINCIPAL_KEY)
    return found if isinstance(found, Principal) else ADMIN


def token_hash(token: str) -> str:
    """What the store keeps of an API token (the operator hashes the Secret's bytes alike)."""
    return hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).hexdigest()


class ApiTokens:
    """The published tokens by hash. A token published by several Secrets with different roles or scopes
    is refused rather than given the widest of them."""

    def __init__(self) -> None:
        self._holders: dict[str, Principal | None] = {}

    def load(self, rows: Iterable[LoadApiTokensRow]) -> None:
        found: dict[str, Principal | None] = {}
        for row in rows:
            role = row["role"]
            if role not in ROLES:
                continue
            holder = Principal("operator" if role == "operator" else "viewer", row["namespace"])
            digest = row["sha256"]
            found[digest] = holder if found.get(digest, holder) == holder else None
        self._holders = found

    def __len__(self) -> int:
        return len(self._holders)

    def holder(self, token: str) -> Principal | None:
        """The principal of ``token``, None if it is not published (or published ambiguously)."""
        return self._holders.get(token_hash(token))
