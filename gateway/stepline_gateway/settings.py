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
    database_url: str = ""
    host: str = "0.0.0.0"  # noqa: S104 - a gateway serves its cluster
    port: int = 8288
    dev: bool = False
    event_keys: list[str] = field(default_factory=list)
    signing_key: str | None = None
    signing_key_fallback: str | None = None
    concurrency: int = 128
    lease_s: float = 30.0
    call_timeout_s: float = 300.0
    retry_base_s: float = 10.0
    retry_max_s: float = 3600.0
    max_body_bytes: int = 3 * 1024 * 1024
    max_event_bytes: int = 512 * 1024
    routes_refresh_s: float = 60.0
    shutdown_grace_s: float = 10.0
    pool_size: int = 10

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
