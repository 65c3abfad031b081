"""The operator's settings: every flag of ``stepline operator`` and its ``STEPLINE_*`` environment variable.

Flags override the environment, the environment overrides the defaults. docs/operator.md lists them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from stepline_store.sealing import Sealer, parse_keys

# Our names in kopf's storage on the resources: the finalizer and the prefix of kopf's annotations.
FINALIZER = "stepline.dev/finalizer"
ANNOTATIONS_PREFIX = "stepline.dev"


@dataclass(frozen=True)
class OperatorSettings:
    database_url: str = field(
        default="", metadata={"help": "Postgres URL of the routing tables, e.g. postgresql://user:pw@host/db"}
    )
    namespaces: tuple[str, ...] = field(
        default=(),
        metadata={"help": "namespace to watch (repeatable; comma-separated in the variable); none: all"},
    )
    cluster_domain: str = field(
        default="cluster.local",
        metadata={"help": "cluster DNS domain in http://<service>.<namespace>.svc.<domain>:<port>"},
    )
    liveness: str | None = field(
        default=None, metadata={"help": "host:port of the liveness endpoint (GET /healthz); none: off"}
    )
    service_retry_s: float = field(
        default=30.0,
        metadata={"help": "seconds between retries of a Function whose Service is missing"},
    )
    pool_size: int = field(default=4, metadata={"help": "Postgres connections of the operator"})
    secrets_key: str | None = field(
        default=None,
        metadata={"help": "comma-separated keys that seal webhook secrets in Postgres (the first seals)"},
    )
    secret_refresh_s: float = field(
        default=60.0,
        metadata={"help": "seconds between reads of each Webhook's Secret, to pick up a changed secret"},
    )

    def __post_init__(self) -> None:
        if self.liveness is not None:
            host, _, port = self.liveness.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"liveness must be host:port, e.g. 0.0.0.0:8080, not {self.liveness!r}")
        if self.service_retry_s <= 0:
            raise ValueError("service_retry_s must be positive")
        if self.secret_refresh_s <= 0:
            raise ValueError("secret_refresh_s must be positive")
        if self.secrets_key:
            parse_keys(self.secrets_key)

    def sealer(self) -> Sealer | None:
        """What seals the secrets of Webhooks; None without a key (only ``none`` webhooks are published)."""
        return Sealer.from_setting(self.secrets_key) if self.secrets_key else None

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def liveness_endpoint(self) -> str | None:
        return None if self.liveness is None else f"http://{self.liveness}/healthz"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> OperatorSettings:
        """Read ``STEPLINE_<FIELD>`` variables, then apply ``overrides`` that are not None."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = source.get(f"STEPLINE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.name == "namespaces":
                values[f.name] = tuple(n.strip() for n in raw.split(",") if n.strip())
            elif f.type == "int":
                values[f.name] = int(raw)
            elif f.type == "float":
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "namespaces" in values:
            values["namespaces"] = tuple(values["namespaces"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]
