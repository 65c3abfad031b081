"""The operator's settings: every flag of ``stepline operator`` and its ``STEPLINE_*`` environment variable.

A pydantic-settings model: each field is read from ``STEPLINE_<FIELD>`` (empty values ignored,
``STEPLINE_NAMESPACES`` comma-separated); flags (keyword arguments) override the environment, the
environment overrides the defaults. docs/operator.md lists them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from stepline_store.sealing import Sealer, parse_keys

# Our names in kopf's storage on the resources: the finalizer and the prefix of kopf's annotations.
FINALIZER = "stepline.dev/finalizer"
ANNOTATIONS_PREFIX = "stepline.dev"


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STEPLINE_", env_ignore_empty=True, frozen=True, extra="ignore"
    )

    database_url: str = Field(
        default="",
        repr=False,
        description="Postgres URL of the routing tables, e.g. postgresql://user:pw@host/db",
    )
    namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="namespace to watch (repeatable; comma-separated in the variable); none: all",
    )
    cluster_domain: str = Field(
        default="cluster.local",
        description="cluster DNS domain in http://<service>.<namespace>.svc.<domain>:<port>",
    )
    liveness: str | None = Field(
        default=None, description="host:port of the liveness endpoint (GET /healthz); none: off"
    )
    service_retry_s: float = Field(
        default=30.0, description="seconds between retries of a Function whose Service is missing"
    )
    pool_size: int = Field(default=4, description="Postgres connections of the operator")
    secrets_key: str | None = Field(
        default=None,
        repr=False,
        description="comma-separated keys that seal webhook secrets in Postgres (the first seals)",
    )
    cluster_token_namespace: str | None = Field(
        default=None,
        description="namespace whose Secrets may hold cluster-scoped API tokens (the operator's own); "
        "none: only namespace-scoped ones",
    )
    secret_refresh_s: float = Field(
        default=60.0,
        description="seconds between reads of each Webhook's Secret, to pick up a changed secret",
    )

    stats_interval_s: float = Field(
        default=30.0,
        description="seconds between writes of the live counts (status.stats) on each Function",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="log lines as plain text or as JSON objects, one per line"
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return tuple(value)

    @field_validator("liveness")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"liveness must be host:port, e.g. 0.0.0.0:8080, not {value!r}")
        return value

    @field_validator("service_retry_s", "secret_refresh_s", "stats_interval_s")
    @classmethod
    def _positive(cls, value: float, info: ValidationInfo) -> float:
        if value <= 0:
            raise ValueError(f"{info.field_name} must be positive")
        return value

    @field_validator("secrets_key")
    @classmethod
    def _keys_parse(cls, value: str | None) -> str | None:
        if value:
            parse_keys(value)
        return value

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
    def from_env(cls, **overrides: Any) -> OperatorSettings:
        """Read the ``STEPLINE_*`` variables, then apply ``overrides`` that are not None (flags)."""
        return cls(**{name: value for name, value in overrides.items() if value is not None})
