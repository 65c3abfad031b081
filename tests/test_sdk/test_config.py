"""Settings: explicit arguments, then STEPLINE_*, then INNGEST_*, then defaults."""

from __future__ import annotations

import pytest
import stepline
from stepline.config import resolve


def test_defaults_without_any_setting() -> None:
    config = resolve(app_id="a", env={})
    assert (config.gateway_url, config.event_key_or_dev, config.dev, config.mode) == (
        "http://127.0.0.1:8288",
        "dev",
        True,
        "dev",
    )
    assert (config.event_key, config.signing_key, config.serve_origin) == (None, None, None)


def test_stepline_variables_win_over_inngest_ones() -> None:
    env = {
        "STEPLINE_GATEWAY_URL": "http://gw:8288/",
        "INNGEST_BASE_URL": "http://inngest",
        "STEPLINE_EVENT_KEY": "sek",
        "INNGEST_EVENT_KEY": "iek",
        "INNGEST_SIGNING_KEY": "signkey-prod-aa",
        "INNGEST_SIGNING_KEY_FALLBACK": "signkey-prod-bb",
        "INNGEST_SERVE_ORIGIN": "https://me",
    }
    config = resolve(app_id="a", env=env)
    assert (config.gateway_url, config.event_key) == ("http://gw:8288", "sek")
    assert config.signing_keys == ["signkey-prod-aa", "signkey-prod-bb"]
    assert (config.dev, config.serve_origin) == (False, "https://me")


def test_inngest_api_base_url_is_the_last_resort() -> None:
    assert resolve(app_id="a", env={"INNGEST_API_BASE_URL": "http://api"}).gateway_url == "http://api"
    assert resolve(app_id="a", env={"INNGEST_DEV": "http://dev:8288"}).gateway_url == "http://dev:8288"


def test_arguments_win_over_the_environment() -> None:
    config = resolve(
        app_id="a", gateway_url="http://arg", dev=False, env={"STEPLINE_GATEWAY_URL": "http://env"}
    )
    assert (config.gateway_url, config.dev) == ("http://arg", False)


@pytest.mark.parametrize(
    ("value", "key", "dev"),
    [("1", "k", True), ("true", "k", True), ("0", None, False), ("false", None, False), (None, "k", False)],
)
def test_dev_mode(value: str | None, key: str | None, dev: bool) -> None:
    env = {k: v for k, v in {"STEPLINE_DEV": value, "STEPLINE_SIGNING_KEY": key}.items() if v is not None}
    assert resolve(app_id="a", env=env).dev is dev


def test_a_bad_dev_value_is_a_config_error() -> None:
    with pytest.raises(stepline.ConfigError, match="STEPLINE_DEV"):
        resolve(app_id="a", env={"INNGEST_DEV": "maybe"})


def test_client_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPLINE_GATEWAY_URL", "http://from-env")
    monkeypatch.setenv("STEPLINE_SIGNING_KEY", "signkey-test-00")
    monkeypatch.delenv("STEPLINE_DEV", raising=False)
    monkeypatch.delenv("INNGEST_DEV", raising=False)
    client = stepline.Client("shop")
    assert (client.config.gateway_url, client.config.dev) == ("http://from-env", False)


def test_function_options_are_checked() -> None:
    client = stepline.Client("shop", dev=True)

    async def fn(ctx: stepline.Context) -> None:
        return None

    with pytest.raises(ValueError, match="retries"):
        client.function(id="f", trigger="a/b", retries=21)(fn)
    with pytest.raises(ValueError, match="trigger"):
        client.function(id="f", trigger=[])
    f = client.function(id="f", trigger=["a/b", stepline.TriggerCron(cron="* * * * *")])(fn)
    assert f.triggers == (stepline.TriggerEvent(event="a/b"), stepline.TriggerCron(cron="* * * * *"))
    with pytest.raises(stepline.ConfigError, match="unique"):
        stepline.handler.Handler(client, [f, f])
