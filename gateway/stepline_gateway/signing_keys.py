"""The signing keys of each namespace: what signs the calls to its services and checks its apps' requests.

Two kinds: the cluster's (``STEPLINE_SIGNING_KEY`` and ``STEPLINE_SIGNING_KEY_FALLBACK``), the default for
every namespace without keys of its own; and a namespace's own, which the operator publishes from a Secret
labelled ``stepline.dev/signing-key: "true"`` sealed with ``STEPLINE_SECRETS_KEY`` (``signing_keys`` table,
operator/stepline_operator/signing_keys.py). The table is read with the routing table on every
``NOTIFY stepline_routes`` and opened then, once, so a call costs a dictionary lookup and no query.

A call to a function of namespace N is signed with N's current key, and its answer must be signed by N's
current or previous key. An SDK app that syncs belongs to the namespace whose key its bearer token is
derived from (the cluster's keys: ``default``); the token is hashed once and looked up, so the time taken
tells nothing of how much of a guess was right. Nothing here logs or answers a key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from stepline import signing
from stepline_store.identity import DEFAULT_NAMESPACE
from stepline_store.queries import LoadSigningKeysRow
from stepline_store.sealing import SealBroken, Sealer

from stepline_gateway.errors import Unauthorized

log = logging.getLogger(__name__)

UNKNOWN_BEARER = (
    "the bearer token does not match a signing key: use STEPLINE_SIGNING_KEY (INNGEST_SIGNING_KEY), or the "
    "INNGEST_SIGNING_KEY of the Secret labelled stepline.dev/signing-key=true in your namespace"
)


@dataclass(frozen=True)
class KeyPair:
    """A namespace's keys: ``current`` signs; ``current`` and ``previous`` (during a rotation) verify."""

    current: str
    previous: str | None = None

    def verifying(self) -> list[str]:
        return [self.current] if self.previous is None else [self.current, self.previous]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class SigningKeys:
    """The keys of every namespace, as last loaded; ``enabled=False`` (dev mode): nothing is signed."""

    def __init__(self, cluster: KeyPair | None, *, sealer: Sealer | None, enabled: bool = True) -> None:
        self._enabled = enabled
        self._cluster = cluster if enabled else None
        self._sealer = sealer
        self._namespaces: dict[str, KeyPair] = {}
        self._cluster_bearers = (
            [signing.bearer_token(key) for key in self._cluster.verifying()] if self._cluster else []
        )
        self._bearers: dict[str, frozenset[str]] = {}

    @property
    def enabled(self) -> bool:
        return self._enabled

    def load(self, rows: Iterable[LoadSigningKeysRow]) -> None:
        """Take the rows of ``load_signing_keys``. A namespace whose keys cannot be opened (no or another
        ``STEPLINE_SECRETS_KEY``) keeps the keys it had, or the cluster's, and an error is logged."""
        if not self._enabled:
            return
        found: dict[str, KeyPair] = {}
        for row in rows:
            namespace = row["namespace"]
            try:
                if self._sealer is None:
                    raise SealBroken("STEPLINE_SECRETS_KEY is not set")
                found[namespace] = KeyPair(
                    current=self._sealer.open(row["current"]).decode("utf-8"),
                    previous=None if row["previous"] is None else self._sealer.open(row["previous"]).decode(),
                )
            except (SealBroken, UnicodeDecodeError) as err:
                log.error(
                    "the signing keys of namespace %s cannot be opened (%s): give the gateway the operator's "
                    "STEPLINE_SECRETS_KEY",
                    namespace,
                    err,
                )
                if namespace in self._namespaces:
                    found[namespace] = self._namespaces[namespace]
        bearers: dict[str, set[str]] = {}
        for namespace, pair in found.items():
            for key in pair.verifying():
                bearers.setdefault(_digest(signing.bearer_token(key)), set()).add(namespace)
        self._namespaces = found
        self._bearers = {digest: frozenset(names) for digest, names in bearers.items()}

    def __len__(self) -> int:
        return len(self._namespaces)

    def of(self, namespace: str) -> KeyPair | None:
        """The keys of ``namespace``: its own, else the cluster's; None when nothing is signed."""
        return self._namespaces.get(namespace, self._cluster)

    def namespace_of_bearer(self, authorization: str | None) -> str:
        """The namespace an SDK app's ``Authorization: Bearer <token>`` belongs to (the cluster's keys:
        ``default``); raise ``Unauthorized`` when no key derives that token. Dev mode: ``default``."""
        if not self._enabled:
            return DEFAULT_NAMESPACE
        namespace = self._match(authorization)
        return DEFAULT_NAMESPACE if namespace is None else namespace

    def signer_of(self, authorization: str | None) -> str | None:
        """What a checkpoint post's bearer token lets it record (``StepWrite.signer``): the steps of its
        namespace's runs, or ("") those of namespaces without keys of their own for the cluster's keys;
        None (nothing to check) in dev mode or while no namespace has keys of its own. ``Unauthorized``
        when no key derives the token."""
        if not self._enabled:
            return None
        namespace = self._match(authorization)
        if not self._namespaces:
            return None
        return "" if namespace is None else namespace

    def _match(self, authorization: str | None) -> str | None:
        """The namespace whose key derives the bearer token; None for the cluster's keys."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(f"no bearer token: {UNKNOWN_BEARER}")
        given = signing.strip_prefix(token.strip())
        cluster = False
        for candidate in self._cluster_bearers:
            cluster |= hmac.compare_digest(given.encode(), candidate.encode())
        namespaces = self._bearers.get(_digest(given))
        if cluster:
            return None
        if namespaces is None:
            raise Unauthorized(UNKNOWN_BEARER)
        if len(namespaces) > 1:
            raise Unauthorized(
                "the bearer token matches the signing keys of several namespaces "
                f"({', '.join(sorted(namespaces))}): give each namespace a key of its own"
            )
        return next(iter(namespaces))
