"""The gateway's settings: every flag of ``stepline gateway`` and its ``STEPLINE_*`` environment variable.

docs/operations.md lists them; flags override the environment, the environment overrides the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields


def _keys(value: str) -> list[str]:
    return [key.strip() for key in value.split(",") if key.strip()]


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default="", metadata={"help": "Postgres URL, e.g. postgresql://user:pw@host/db"}
    )
    host: str = field(default="0.0.0.0", metadata={"help": "address to listen on"})  # noqa: S104
    port: int = field(default=8288, metadata={"help": "port of the API and dashboard"})
    dev: bool = field(default=False, metadata={"help": "development mode: no event keys or signatures"})
    event_keys: list[str] = field(
        default_factory=list, metadata={"help": "comma-separated keys accepted by POST /e/{key}"}
    )
    signing_key: str | None = field(default=None, metadata={"help": "key that signs calls to services"})
    signing_key_fallback: str | None = field(
        default=None, metadata={"help": "previous signing key, accepted during a rotation"}
    )
    api_token: str | None = field(
        default=None, metadata={"help": "token the dashboard and the /v1 API require (not in dev mode)"}
    )
    no_api_token: bool = field(
        default=False,
        metadata={"help": "serve the dashboard and the /v1 API without a token: only behind your own auth"},
    )
    concurrency: int = field(default=128, metadata={"help": "calls in flight at once per gateway"})
    lease_s: float = field(default=30.0, metadata={"help": "seconds before a dead gateway's call is retried"})
    call_timeout_s: float = field(default=300.0, metadata={"help": "seconds a service may take to answer"})
    retry_base_s: float = field(default=10.0, metadata={"help": "backoff after a first failed attempt"})
    retry_max_s: float = field(default=3600.0, metadata={"help": "longest backoff between attempts"})
    max_body_bytes: int = field(default=3 * 1024 * 1024, metadata={"help": "largest request body accepted"})
    max_event_bytes: int = field(default=512 * 1024, metadata={"help": "largest single event accepted"})
    routes_refresh_s: float = field(default=60.0, metadata={"help": "routing table reload period"})
    shutdown_grace_s: float = field(default=10.0, metadata={"help": "seconds to finish calls on shutdown"})
    pool_size: int = field(default=10, metadata={"help": "Postgres connections per gateway"})
    retention_h: float = field(
        default=168.0, metadata={"help": "hours of event and run history kept (at least 24)"}
    )
    unrecoverable_exit_s: float = field(
        default=300.0,
        metadata={
            "help": "exit (so that Kubernetes restarts the pod) when a background task fails this long with "
            "errors other than database or network ones; 0: never"
        },
    )
    clock_offset_s: float = field(
        default=0.0,
        metadata={
            "help": "testing aid: seconds added to the database's clock when this gateway judges due times "
            "(sleeps, retries, cron); leases ignore it; keep 0 in production"
        },
    )

    def __post_init__(self) -> None:
        if self.retention_h < 24:
            raise ValueError("retention_h must be at least 24: duplicate event ids are refused for 24 hours")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``STEPLINE_<FIELD>`` variables, then apply ``overrides`` that are not None."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = source.get(f"STEPLINE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.name == "event_keys":
                values[f.name] = _keys(raw)
            elif f.type in ("int",):
                values[f.name] = int(raw)
            elif f.type in ("float",):
                values[f.name] = float(raw)
            elif f.type in ("bool",):
                values[f.name] = raw.lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def signing_keys(self) -> list[str]:
        return [key for key in (self.signing_key, self.signing_key_fallback) if key]
