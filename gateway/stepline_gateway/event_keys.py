"""The event keys ``POST /e/{key}`` accepts, and the namespaces each one's events reach.

Two kinds: the cluster's keys (``STEPLINE_EVENT_KEYS``, the chart's values), whose events reach every
namespace, compared in constant time; and namespaces' keys, which the operator publishes from labelled
Secrets as sha256 hashes (``event_keys`` table, operator/stepline_operator/event_keys.py), whose events
reach only their namespace. The table is read again on every ``NOTIFY stepline_routes``, so a Secret added
or deleted takes effect within the time of a NOTIFY. The key given is hashed once and looked up: the
lookup's time depends on the hash, never on how much of a guess was right.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from stepline_store.queries import LoadEventKeysRow

from stepline_gateway import secrets
from stepline_gateway.errors import Unauthorized
from stepline_gateway.routing import Scope

UNKNOWN_KEY = (
    "unknown event key: use one of the keys in STEPLINE_EVENT_KEYS, or of a Secret labelled "
    "stepline.dev/event-key=true in your namespace"
)


def key_hash(key: str) -> str:
    """What the store keeps of an event key (the operator hashes the Secret's bytes alike)."""
    return hashlib.sha256(key.strip().encode("utf-8", "surrogateescape")).hexdigest()


class EventKeys:
    def __init__(self, cluster_keys: Iterable[str]) -> None:
        self._cluster = list(cluster_keys)
        self._namespaces: dict[str, frozenset[str]] = {}

    def load(self, rows: Iterable[LoadEventKeysRow]) -> None:
        found: dict[str, set[str]] = {}
        for row in rows:
            found.setdefault(row["sha256"], set()).add(row["namespace"])
        self._namespaces = {digest: frozenset(names) for digest, names in found.items()}

    def __len__(self) -> int:
        return len(self._namespaces)

    def scope(self, key: str) -> Scope:
        """The namespaces the events sent with ``key`` reach (None: every one); Unauthorized if unknown."""
        if secrets.matches_any(key, self._cluster):
            return None
        namespaces = self._namespaces.get(key_hash(key))
        if namespaces is None:
            raise Unauthorized(UNKNOWN_KEY)
        return next(iter(namespaces)) if len(namespaces) == 1 else namespaces
