"""The client's settings: explicit arguments first, then STEPLINE_* variables, then their INNGEST_* twins.

The Client resolves one ClientConfig when it is built; the handler and the event sender only read it.
Keeping the INNGEST_* names lets an app written for the official SDK move to Stepline unchanged.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from collections.abc import Mapping
from typing import Final

from stepline.errors import ConfigError
from stepline.protocol import SDK_NAME

SDK_VERSION: Final = importlib.metadata.version("stepline")
SDK_IDENTITY: Final = f"{SDK_NAME}:v{SDK_VERSION}"

DEFAULT_GATEWAY_URL: Final = "http://127.0.0.1:8288"
DEV_EVENT_KEY: Final = "dev"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Everything the client needs to send events, answer calls and sync."""

    app_id: str
    gateway_url: str
    event_key: str | None
    signing_key: str | None
    signing_key_fallback: str | None
    dev: bool
    serve_origin: str | None
    # Checkpoint mode for functions that do not say (STEPLINE_CHECKPOINT; on unless set to 0/false).
    checkpoint: bool = True

    @property
    def mode(self) -> str:
        return "dev" if self.dev else "cloud"

    @property
    def event_key_or_dev(self) -> str:
        return self.event_key or DEV_EVENT_KEY

    @property
    def verifies_signatures(self) -> bool:
        return not self.dev and self.signing_key is not None

    @property
    def signing_keys(self) -> list[str]:
        """The keys a signature may be made with, current first."""
        return [key for key in (self.signing_key, self.signing_key_fallback) if key]


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def resolve(
    *,
    app_id: str,
    gateway_url: str | None = None,
    event_key: str | None = None,
    signing_key: str | None = None,
    signing_key_fallback: str | None = None,
    dev: bool | None = None,
    serve_origin: str | None = None,
    checkpoint: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Fill every setting not passed explicitly from the environment, then from the defaults."""
    env = os.environ if env is None else env
    if not app_id:
        raise ConfigError("app_id must not be empty: it names the app to the gateway")
    dev_setting = _first(env, "STEPLINE_DEV", "INNGEST_DEV")
    # The official SDKs accept INNGEST_DEV=<dev server URL>: dev mode, and that URL as the server.
    dev_url = dev_setting if dev_setting and dev_setting.startswith(("http://", "https://")) else None
    signing_key = signing_key or _first(env, "STEPLINE_SIGNING_KEY", "INNGEST_SIGNING_KEY")
    if dev is None:
        dev = _parse_dev(dev_setting, dev_url=dev_url, has_signing_key=signing_key is not None)
    url = (
        gateway_url
        or _first(env, "STEPLINE_GATEWAY_URL", "INNGEST_BASE_URL", "INNGEST_API_BASE_URL")
        or dev_url
        or DEFAULT_GATEWAY_URL
    )
    return ClientConfig(
        app_id=app_id,
        gateway_url=url.rstrip("/"),
        event_key=event_key or _first(env, "STEPLINE_EVENT_KEY", "INNGEST_EVENT_KEY"),
        signing_key=signing_key,
        signing_key_fallback=signing_key_fallback
        or _first(env, "STEPLINE_SIGNING_KEY_FALLBACK", "INNGEST_SIGNING_KEY_FALLBACK"),
        dev=dev,
        serve_origin=serve_origin or _first(env, "STEPLINE_SERVE_ORIGIN", "INNGEST_SERVE_ORIGIN"),
        checkpoint=checkpoint if checkpoint is not None else _flag(env, "STEPLINE_CHECKPOINT", default=True),
    )


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = _first(env, name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} is {value!r}: use 1/true or 0/false")


def _parse_dev(setting: str | None, *, dev_url: str | None, has_signing_key: bool) -> bool:
    if dev_url is not None:
        return True
    if setting is None:
        return not has_signing_key
    lowered = setting.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(
        f"STEPLINE_DEV/INNGEST_DEV is {setting!r}: use 1/true for dev mode or 0/false for cloud mode"
    )
